"""The command line: parse, call a node service, print. No logic lives here."""

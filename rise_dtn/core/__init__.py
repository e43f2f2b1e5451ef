"""Pure logic: identities, cards, the bundle codec and sealing. Never does I/O."""

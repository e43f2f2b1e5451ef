"""Real mail servers for the tests: Dovecot (IMAP, LMTP, SASL) and Postfix (submission).

The mailbox carrier is tested against the real thing, not a mock: Debian's
Dovecot (dovecot-imapd, dovecot-lmtpd) serves IMAP and IMAPS, and Postfix
takes SMTP submission (STARTTLS, AUTH through Dovecot's SASL) and delivers
into Dovecot by LMTP, as on a small provider. When the packages are missing
and we are root, the fixtures install them with apt-get (like
tests/postgres.py); only when that cannot be done are the mail tests
skipped, with one line saying why. Postfix refuses to run as anyone but
root, so the SMTP tests are skipped (one line) for a normal user, while
Dovecot runs as that user (no chroot, every service as the same user).

Each server runs as a plain foreground process, in a process group of its
own, from a configuration generated into a fresh temporary directory: its
own base_dir, state, mail, queue and logs, a self-signed CA and a server
certificate for 127.0.0.1 made with `cryptography`, and passwd-file users
with random passwords (never logged). Everything listens on 127.0.0.1 on
free ports; startup waits for the ports with a deadline and teardown kills
the whole process group, so no server outlives the test session. The
directory is not under pytest's tmp_path because that is private to root
and Dovecot's and Postfix's unprivileged users must reach their files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import grp
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
DOMAIN = "example.test"
USERS = ("alice", "bob", "carol")  # mailboxes every test may use
QUOTA_USER = "tight"  # a mailbox with QUOTA_BYTES of room, for over-quota tests
QUOTA_BYTES = 64 * 1024  # small enough that one test message fills it
START_ATTEMPTS = 3  # a free port can be taken by another process before the server binds it
# A loaded shared machine starts Dovecot in well under a second and Postfix in
# a few; the deadline only bounds a server that will never come up.
START_DEADLINE_SECONDS = 30.0
STOP_DEADLINE_SECONDS = 10.0
INSTALL_TIMEOUT_SECONDS = 900
DOVECOT_PACKAGES = ("dovecot-imapd", "dovecot-lmtpd")
POSTFIX_PACKAGES = ("postfix",)
DOVECOT = "/usr/sbin/dovecot"
POSTFIX = "/usr/sbin/postfix"
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"


class Unavailable(Exception):
    """A mail server cannot be had on this machine; the message is the skip line."""


@dataclasses.dataclass(frozen=True, slots=True)
class MailUser:
    """One mailbox: its login is also its address."""

    address: str
    password: str


@dataclasses.dataclass(frozen=True, slots=True)
class Dovecot:
    """A running Dovecot: IMAPS (implicit TLS), IMAP (STARTTLS) and LMTP on loopback."""

    imaps_port: int
    imap_port: int
    lmtp_port: int
    sasl_socket: Path  # Dovecot's auth-client socket, for Postfix's SMTP AUTH
    ca_file: Path  # the CA that signed the server's certificate
    cert_file: Path
    key_file: Path
    users: dict[str, MailUser]  # by short name: "alice" -> alice@example.test
    log_file: Path

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the server against the generated CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


@dataclasses.dataclass(frozen=True, slots=True)
class Postfix:
    """A running Postfix taking submission (STARTTLS + AUTH) and delivering to Dovecot."""

    submission_port: int
    dovecot: Dovecot
    log_file: Path


# -- installing --------------------------------------------------------------------------


def install(packages: tuple[str, ...], binary: str) -> None:
    """apt-get install `packages` unless `binary` is there (after apt-get update if needed)."""
    if Path(binary).exists():
        return
    names = " ".join(packages)
    if os.geteuid() != 0:
        raise Unavailable(f"mail tests skipped: no {binary}, and only root may install {names}")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"mail tests skipped: no {binary} and no apt-get to install {names}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Postfix asks what kind of mail system this is; the tests configure their own.
    if shutil.which("debconf-set-selections") is not None:
        subprocess.run(
            ["debconf-set-selections"],
            input=b"postfix postfix/main_mailer_type select No configuration\n",
            capture_output=True,
            check=False,
        )
    result = None
    for step in ([], ["apt-get", "update", "-qq"]):
        if step:
            subprocess.run(
                step, env=env, capture_output=True, check=False, timeout=INSTALL_TIMEOUT_SECONDS
            )
        result = subprocess.run(
            ["apt-get", "install", "-y", "-qq", *packages],
            env=env,
            capture_output=True,
            check=False,
            timeout=INSTALL_TIMEOUT_SECONDS,
        )
        if result.returncode == 0 and Path(binary).exists():
            return
    assert result is not None
    last = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
    raise Unavailable(
        f"mail tests skipped: apt-get install {names} failed: {last[-1] if last else '?'}"
    )


# -- certificates ----------------------------------------------------------------------


CA_KEY_USAGE = dict.fromkeys(
    ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
     "key_agreement", "encipher_only", "decipher_only"], False,
) | {"key_cert_sign": True, "crl_sign": True}  # fmt: skip


def write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost it signed.

    A CA rather than one self-signed leaf: the carrier's "configured CA file"
    is what the tests prove, and a leaf that is its own CA is refused by
    stricter TLS stacks."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    lifetime = datetime.timedelta(days=2)  # the certificate outlives any test session
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Mail CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(**CA_KEY_USAGE), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + lifetime)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (directory / name for name in ("ca.pem", "cert.pem", "key.pem"))
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


# -- processes --------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free right now (all probes held open until all are chosen)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def wait_for_ports(process: subprocess.Popen[bytes], ports: list[int], log: Path) -> None:
    """Poll until every port accepts a connection; fail at once if the server died.

    A documented poll with a deadline, the only way to learn that a separate
    process has bound its sockets."""
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    waiting = list(ports)
    while waiting:
        if process.poll() is not None:
            raise ServerDied(log.read_text(errors="replace") if log.exists() else "")
        try:
            with socket.create_connection((HOST, waiting[0]), timeout=1):
                waiting.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"mail server did not listen on {waiting} within {START_DEADLINE_SECONDS} s:\n"
                + (log.read_text(errors="replace") if log.exists() else "")
            )
        time.sleep(0.05)


class ServerDied(Exception):
    """The server exited during startup (often: a port was taken); the log says why."""


def stop_group(process: subprocess.Popen[bytes], group: int) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after a deadline.

    Waits (a poll with a deadline) until no process of the group is running:
    a master's children can outlive it by a moment. Zombies do not count;
    reaping orphans is PID 1's business, and they no longer run."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + STOP_DEADLINE_SECONDS
        while process.poll() is None or running_in_group(group):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return
    raise RuntimeError(f"mail server processes {running_in_group(group)} survived SIGKILL")


def running_in_group(group: int) -> list[int]:
    """The processes of a process group that are not zombies (from /proc)."""
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ")".
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            running.append(int(stat.parent.name))
    return running


# -- Dovecot ----------------------------------------------------------------------------


def dovecot_config(
    base: Path, ports: list[int], certificates: tuple[Path, Path, Path], as_root: bool
) -> str:
    """dovecot.conf for one test server (Dovecot wants one setting per line in blocks)."""
    imaps, imap, lmtp = ports
    _ca, cert, key = certificates
    if as_root:
        # Dovecot will not run login or mail processes as root: its own users
        # for its internals and logins, and Debian's `mail` user owns the mail.
        internal, login, mail = "dovecot", "dovenull", pwd.getpwnam("mail")
    else:
        me = pwd.getpwuid(os.getuid())
        internal, login, mail = me.pw_name, me.pw_name, me
    internal_group = grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name
    return f"""\
protocols = imap lmtp
listen = {HOST}
base_dir = {base}/run
state_dir = {base}/state
instance_name = rise-test-mail-{imaps}
log_path = {base}/dovecot.log
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = {mail.pw_uid}
last_valid_uid = {mail.pw_uid}
first_valid_gid = {mail.pw_gid}
last_valid_gid = {mail.pw_gid}
mail_uid = {mail.pw_uid}
mail_gid = {mail.pw_gid}
mail_home = {base}/mail/%u
mail_location = maildir:~/Maildir
mail_plugins = quota
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
# A wrong password in one test must not slow the next test's logins from
# 127.0.0.1: no reply delay, and (below) no anvil auth penalty, which
# would hold every later AUTH from that address for 2 to 15 s.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = passwd-file
  args = {base}/users
}}
plugin {{
  quota = count:User quota
  quota_vsizes = yes
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {imap}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {imaps}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {HOST}
    port = {lmtp}
  }}
}}
service auth {{
  unix_listener auth-client {{
    mode = 0666
  }}
}}
"""


def write_users(path: Path) -> dict[str, MailUser]:
    """passwd-file users with fresh random passwords; QUOTA_USER has QUOTA_BYTES of room."""
    users = {name: MailUser(f"{name}@{DOMAIN}", secrets.token_urlsafe(12)) for name in USERS}
    users[QUOTA_USER] = MailUser(f"{QUOTA_USER}@{DOMAIN}", secrets.token_urlsafe(12))
    lines = []
    for name, user in users.items():
        extra = f"userdb_quota_rule=*:storage={QUOTA_BYTES}B" if name == QUOTA_USER else ""
        lines.append(f"{user.address}:{{PLAIN}}{user.password}::::::{extra}\n")
    path.write_text("".join(lines))
    return users


def prepare_directory(prefix: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)  # Dovecot's and Postfix's unprivileged processes reach their files
    return base


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """A Dovecot of our own for the duration of the block."""
    install(DOVECOT_PACKAGES, DOVECOT)
    if not Path("/usr/lib/dovecot/lmtp").exists():
        install(("dovecot-lmtpd",), "/usr/lib/dovecot/lmtp")
    as_root = os.geteuid() == 0
    base = prepare_directory("rise-dovecot-")
    try:
        certificates = write_certificates(base)
        users = write_users(base / "users")
        (base / "mail").mkdir()
        if as_root:
            (base / "users").chmod(0o640)
            shutil.chown(base / "users", group="dovecot")
            shutil.chown(base / "mail", "mail", "mail")
        log = base / "dovecot.log"
        for attempt in range(START_ATTEMPTS):
            ports = free_ports(3)
            config = base / "dovecot.conf"
            config.write_text(dovecot_config(base, ports, certificates, as_root))
            with (base / "dovecot.out").open("ab") as out:
                process = subprocess.Popen(
                    [DOVECOT, "-F", "-c", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                wait_for_ports(process, ports, log)
            except ServerDied as died:
                stop_group(process, process.pid)
                if attempt + 1 == START_ATTEMPTS:
                    output = (base / "dovecot.out").read_text(errors="replace")
                    raise RuntimeError(f"Dovecot did not start:\n{died}\n{output}") from None
                continue
            except BaseException:
                stop_group(process, process.pid)
                raise
            break
        try:
            yield Dovecot(
                imaps_port=ports[0],
                imap_port=ports[1],
                lmtp_port=ports[2],
                sasl_socket=base / "run" / "auth-client",
                ca_file=certificates[0],
                cert_file=certificates[1],
                key_file=certificates[2],
                users=users,
                log_file=log,
            )
        finally:
            stop_group(process, process.pid)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- Postfix ----------------------------------------------------------------------------

# Only the services a submission-to-LMTP path needs, none chrooted (the
# queue is a temporary directory with no copy of /etc inside).
MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


# The queue as `postfix check` makes it (owner, group, mode), made directly:
# the check takes about 3 s, most of a Postfix start.
QUEUE_DIRECTORIES = {
    **dict.fromkeys(
        ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
         "private", "saved", "trace"],
        ("postfix", "root", 0o700),
    ),
    "maildrop": ("postfix", "postdrop", 0o730),
    "public": ("postfix", "postdrop", 0o710),
    "pid": ("root", "root", 0o755),
}  # fmt: skip


def make_queue(queue: Path) -> None:
    queue.mkdir()
    for name, (owner, group, mode) in QUEUE_DIRECTORIES.items():
        (queue / name).mkdir()
        (queue / name).chmod(mode)
        shutil.chown(queue / name, owner, group)


def postfix_main_cf(base: Path, dovecot: Dovecot) -> str:
    recipients = base / "recipients"
    return f"""\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = /dev/stdout
myhostname = mail.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = {HOST}/32
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
relayhost =
default_transport = error:no mail leaves the test server
local_transport = error:no local delivery on the test server
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = texthash:{recipients}
virtual_transport = lmtp:inet:{HOST}:{dovecot.lmtp_port}
smtpd_tls_cert_file = {dovecot.cert_file}
smtpd_tls_key_file = {dovecot.key_file}
smtpd_sasl_type = dovecot
smtpd_sasl_path = {dovecot.sasl_socket}
"""


@contextlib.contextmanager
def running_postfix(dovecot: Dovecot) -> Iterator[Postfix]:
    """A Postfix of our own, delivering into `dovecot`, for the duration of the block."""
    if os.geteuid() != 0:
        raise Unavailable("SMTP tests skipped: Postfix runs only as root")
    install(POSTFIX_PACKAGES, POSTFIX)
    base = prepare_directory("rise-postfix-")
    try:
        (base / "recipients").write_text(
            "".join(f"{user.address} ok\n" for user in dovecot.users.values())
        )
        log = base / "postfix.log"
        # Configuration, queue and data apart: Postfix wants each with
        # owners of its own (root, postfix and root by directory, postfix).
        (base / "etc").mkdir()
        make_queue(base / "queue")
        (base / "data").mkdir()
        shutil.chown(base / "data", "postfix")
        config = ["-c", str(base / "etc")]
        (base / "etc" / "main.cf").write_text(postfix_main_cf(base, dovecot))
        for attempt in range(START_ATTEMPTS):
            (port,) = free_ports(1)
            (base / "etc" / "master.cf").write_text(MASTER_CF.format(host=HOST, port=port))
            with log.open("ab") as out:
                # master itself (-s: logging to stdout, as `postfix start-fg`
                # runs it) rather than `postfix start-fg`: it is then our child,
                # leads its own process group, and is reaped by us.
                process = subprocess.Popen(
                    [POSTFIX_MASTER, *config, "-s"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                wait_for_ports(process, [port], log)
            except ServerDied as died:
                stop_group(process, process.pid)
                if attempt + 1 == START_ATTEMPTS:
                    raise RuntimeError(f"Postfix did not start:\n{died}") from None
                continue
            except BaseException:
                stop_group(process, process.pid)
                raise
            break
        try:
            yield Postfix(submission_port=port, dovecot=dovecot, log_file=log)
        finally:
            stop_group(process, process.pid)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """The session's Dovecot (started on first use)."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_dovecot())
        except Unavailable as exc:
            pytest.skip(str(exc))
        yield server


@pytest.fixture(scope="session")
def postfix(dovecot: Dovecot) -> Iterator[Postfix]:
    """The session's Postfix, delivering into the session's Dovecot."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_postfix(dovecot))
        except Unavailable as exc:
            pytest.skip(str(exc))
        yield server

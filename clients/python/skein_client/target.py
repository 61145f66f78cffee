"""Where a client's calls go and with what credentials: the same lookup as the ``skein`` CLI
(agent/cli/target.ts, docs/cli.md "Where client commands go"). Each setting comes from the
first layer that has it:

    argument (peer=, cert=, key=, ca=, token=, token_file=)
    > environment (SKEIN_PEER, SKEIN_CERT, SKEIN_KEY, SKEIN_CA, SKEIN_TOKEN, SKEIN_TOKEN_FILE)
    > client profile (profile= / SKEIN_PROFILE, else the profile file's "default").

The profile file is JSONC at $SKEIN_CLIENT_CONFIG, else $XDG_CONFIG_HOME/skein/client.json
(~/.config/skein/client.json); relative paths in it resolve against its folder. The CLI's last
layer, the local development agent of ./agent.config.json, is not implemented here: with no
peer anywhere the client says so and names the settings to give.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from . import _jsonc
from .errors import UsageError

StrPath = Union[str, "os.PathLike[str]"]

#: The port skein listens on unless configured otherwise; a peer without a port dials it (never 443).
DEFAULT_PORT = 7443

_ENV = {"peer": "SKEIN_PEER", "cert": "SKEIN_CERT", "key": "SKEIN_KEY", "ca": "SKEIN_CA", "token": "SKEIN_TOKEN", "tokenFile": "SKEIN_TOKEN_FILE"}
_ARG = {"peer": "peer=", "cert": "cert=", "key": "key=", "ca": "ca=", "token": "token=", "tokenFile": "token_file="}
_PATHS = {"cert", "key", "ca", "tokenFile"}
_PROFILE_KEYS = [*_ENV, "plaintext"]
_PEER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$")


@dataclass(frozen=True)
class Setting:
    """A value and where it came from, so every error names the argument, variable or profile key."""

    value: str
    source: str


@dataclass(frozen=True)
class Target:
    """A resolved target: ``peer`` is ``HOST:PORT``; ``cert``/``key``/``ca`` are file paths."""

    peer: str
    plaintext: bool = False
    cert: Optional[Setting] = None
    key: Optional[Setting] = None
    ca: Optional[Setting] = None
    #: Kept out of repr(): a target may be printed or logged.
    token: Optional[str] = field(default=None, repr=False)

    @property
    def origin(self) -> str:
        return f"{'http' if self.plaintext else 'https'}://{self.peer}"


@dataclass(frozen=True)
class _Profile:
    name: str
    file: Path
    values: Mapping[str, Any]


def resolve_target(
    peer: Optional[str] = None,
    cert: Optional[StrPath] = None,
    key: Optional[StrPath] = None,
    ca: Optional[StrPath] = None,
    token: Optional[str] = None,
    token_file: Optional[StrPath] = None,
    profile: Optional[str] = None,
    plaintext: Optional[bool] = None,
    env: Optional[Mapping[str, str]] = None,
) -> Target:
    """Resolves the target from the arguments, then ``env`` (default ``os.environ``), then the profile.

    Raises :class:`UsageError` naming the source of a bad setting.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    chosen = _load_profile(profile if profile is not None else environ.get("SKEIN_PROFILE") or None, environ)
    args: Dict[str, Optional[str]] = {
        "peer": peer, "cert": _str(cert), "key": _str(key), "ca": _str(ca), "token": token, "tokenFile": _str(token_file),
    }

    def pick(name: str) -> Optional[Setting]:
        if args[name] is not None:
            return Setting(str(args[name]), _ARG[name])
        if environ.get(_ENV[name]):
            return Setting(environ[_ENV[name]], _ENV[name])
        if chosen is not None and isinstance(chosen.values.get(name), str):
            value = str(chosen.values[name])
            if name in _PATHS:
                value = str(chosen.file.parent / value)
            return Setting(value, f'profile "{chosen.name}" key "{name}" ({chosen.file})')
        return None

    is_plaintext = plaintext is True or (plaintext is None and chosen is not None and chosen.values.get("plaintext") is True)
    the_token = _read_token(pick("token"), pick("tokenFile"))
    tls = {name: pick(name) for name in ("cert", "key", "ca")}
    given = [s for s in tls.values() if s is not None]
    if is_plaintext and given:
        why = "plaintext=True" if plaintext else f'plaintext (profile "{chosen.name if chosen else ""}")'
        raise _usage(f"{why} sends no client certificate and checks none: drop {', '.join(s.source for s in given)}")
    if (tls["cert"] is None) != (tls["key"] is None):
        missing = "key" if tls["key"] is None else "cert"
        present = tls["cert"] or tls["key"]
        raise _usage(f"a client certificate needs its key: {present.source if present else ''} is set but not {_ARG[missing]} / {_ENV[missing]}")
    peer_setting = pick("peer")
    if peer_setting is None:
        raise _usage(
            "no peer to call: pass peer=HOST[:PORT], set SKEIN_PEER, or give a client profile "
            "(SKEIN_CLIENT_CONFIG or ~/.config/skein/client.json; see docs/cli.md)",
        )
    return Target(peer=normalize_peer(peer_setting, is_plaintext), plaintext=is_plaintext, token=the_token, **tls)


def normalize_peer(setting: Union[Setting, str], plaintext: bool = False) -> str:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT``, optionally behind ``https://`` (or,
    with plaintext, ``http://``), as ``HOST:PORT``. A missing port is skein's 7443, never 443."""
    value, source = (setting.value, setting.source) if isinstance(setting, Setting) else (setting, "peer=")
    scheme = re.match(r"^(https?)://", value)
    if scheme and scheme.group(1) == "http" and not plaintext:
        raise _usage(f"{source}: {value} is plaintext http://: pass plaintext=True to send calls and tokens unencrypted")
    if scheme and scheme.group(1) == "https" and plaintext:
        raise _usage(f"{source}: {value} is https:// but plaintext was asked for")
    rest = value[scheme.end():] if scheme else value
    rest = rest[:-1] if rest.endswith("/") else rest
    m = _PEER.match(rest)
    if m is None:
        hint = " (write an IPv6 address in brackets: [::1]:7443)" if rest.count(":") > 1 and not rest.startswith("[") else ""
        raise _usage(f"{source}: {value!r} is not HOST[:PORT]{hint}")
    port = DEFAULT_PORT if m.group(2) is None else int(m.group(2))
    if not 1 <= port <= 65535:
        raise _usage(f"{source}: port {m.group(2)} is out of range (1-65535)")
    return f"{m.group(1)}:{port}"


def check_token(token: str, source: str = "token=") -> str:
    """The ``authorization`` header value for a token: verbatim when it contains a space (it names
    its scheme, e.g. ``SkeinNonce …``), else ``Bearer <token>``. The token never appears in errors."""
    if not isinstance(token, str) or token.strip() == "":
        raise _usage(f"{source}: the token must be a non-empty string")
    if re.search(r"[\x00-\x1f\x7f]", token):
        raise _usage(f"{source}: the token contains a control character (a newline?); it cannot be sent in a header")
    return token if " " in token else f"Bearer {token}"


def _usage(message: str) -> UsageError:
    return UsageError("SKEIN_ERR_USAGE", message)


def _str(value: Optional[StrPath]) -> Optional[str]:
    return None if value is None else os.fspath(value)


def _rank(source: str) -> int:
    """0 for an argument, 1 for the environment, 2 for a profile: the lower layer loses."""
    return 0 if source.endswith("=") else 1 if source.startswith("SKEIN_") else 2


def _read_token(token: Optional[Setting], file: Optional[Setting]) -> Optional[str]:
    """The token, or the trimmed content of the token file, from whichever layer is higher."""
    if token and file and _rank(token.source) == 0 and _rank(file.source) == 0:
        raise _usage("token= and token_file= cannot be given together")
    if file and (token is None or _rank(file.source) < _rank(token.source)):
        try:
            value = Path(file.value).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise _usage(f"{file.source}: cannot read {file.value}: {err.strerror or err}") from None
        check_token(value, f"{file.source} {file.value}")
        return value
    if token is None:
        return None
    check_token(token.value, token.source)
    return token.value


def _load_profile(name: Optional[str], env: Mapping[str, str]) -> Optional[_Profile]:
    """The selected profile, or None when there is no profile file and none was asked for."""
    explicit = env.get("SKEIN_CLIENT_CONFIG")
    if explicit:
        file = Path(explicit)
    else:
        config_home = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
        file = Path(config_home) / "skein" / "client.json"
    if not file.exists():
        if explicit:
            raise _usage(f"SKEIN_CLIENT_CONFIG: {file} does not exist")
        if name:
            raise _usage(f'profile "{name}" asked for, but there is no client profile file at {file}')
        return None

    def bad(why: str) -> UsageError:
        return _usage(f"client profile file {file}: {why}")

    try:
        doc = _jsonc.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise bad(str(err)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict):
        raise bad('expected { "default": NAME, "profiles": { NAME: { "peer", "cert", "key", "ca", "token", "tokenFile", "plaintext" } } }')
    chosen = name if name is not None else doc.get("default") if isinstance(doc.get("default"), str) else None
    if chosen is None:
        return None
    values = doc["profiles"].get(chosen)
    if not isinstance(values, dict):
        raise bad(f'no profile named "{chosen}" (profiles: {", ".join(doc["profiles"]) or "none"})')
    for k, v in values.items():
        if k not in _PROFILE_KEYS:
            raise bad(f'profile "{chosen}": unknown key "{k}" (known: {", ".join(_PROFILE_KEYS)})')
        kind = bool if k == "plaintext" else str
        if not isinstance(v, kind):
            raise bad(f'profile "{chosen}" key "{k}": must be a {"boolean" if kind is bool else "string"}')
    return _Profile(chosen, file.absolute(), values)

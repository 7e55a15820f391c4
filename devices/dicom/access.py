"""Who may associate with the gateway, and what each caller may ask for (issue 7).

A ``CallerPolicy`` answers two questions at association time: may this calling AE title,
from this host, associate at all (else A-ASSOCIATE-RJ, calling AE title not recognised),
and which DIMSE operations may it use (``echo``, ``store``, ``find``, ``get``, ``move``).
Operations a caller may not use are refused twice over: their presentation contexts are
rejected in negotiation (result 1, user rejection), and a request that arrives anyway on a
context negotiated for another purpose (a C-STORE on a storage context accepted for
C-GET's sub-operations) is answered with status 0x0124, Refused: Not Authorized.

The policy also knows where an allowlisted AE listens (``port``), which is what a C-MOVE
needs: the move destination must be a known AE with an address, as on any PACS.

``caller_policy`` reads every form the setting ``CAREGRAPH_DICOM_ALLOWED_CALLERS`` has had,
so older configurations keep their meaning:

- unset (``None``): any caller, every operation (one-machine demo);
- AE -> hosts (``{"CT1": {"10.0.0.5"}}``, what the gateway took before operations existed):
  every operation, as before;
- AE -> ``{"hosts": [...], "operations": [...], "port": 104}`` as JSON text, as a mapping,
  or as objects with those attributes (``security.allowlists.DicomCaller``); ``operations``
  defaults to echo and store, and each may be written ``store`` or ``C-STORE``;
- a compact line for environment files: ``CT1@10.0.0.5:store;PACS@10.0.0.9/104:find,move;
  WS@*:echo``, i.e. ``AE@host[|host...][/port][:operation,...]`` separated by ``;``
  (``*`` or nothing after ``@``: any host).

C-ECHO is always permitted to an admitted caller: it is the connectivity test.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from caregraph.errors import ConfigError

ECHO, STORE, FIND, GET, MOVE = "echo", "store", "find", "get", "move"
OPERATIONS: Final = frozenset({ECHO, STORE, FIND, GET, MOVE})
DEFAULT_OPERATIONS: Final = frozenset({ECHO, STORE})
_SPELLINGS: Final = {
    **{op: op for op in OPERATIONS},
    **{f"c-{op}": op for op in OPERATIONS},
    **{f"c_{op}": op for op in OPERATIONS},
}


def operation(name: str) -> str:
    """``store``, ``STORE``, ``C-STORE`` -> ``store``; ``ConfigError`` for anything else."""
    found = _SPELLINGS.get(name.strip().lower())
    if found is None:
        allowed = ", ".join(sorted(OPERATIONS))
        raise ConfigError(f"{name!r} is not one of the DICOM operations ({allowed})")
    return found


def _ae(title: str) -> str:
    ae = title.strip()
    if not 1 <= len(ae) <= 16 or "\\" in ae or not ae.isprintable():
        raise ConfigError(f"AE title must be 1 to 16 printable characters, not {title!r}")
    return ae


@dataclass(frozen=True, slots=True)
class CallerRule:
    """One allowlisted AE: hosts it may connect from (empty: any), the operations it may
    use (echo always), and the port its own SCP listens on (for C-MOVE), if any."""

    hosts: frozenset[str] = frozenset()
    operations: frozenset[str] = DEFAULT_OPERATIONS
    port: int | None = None

    def __post_init__(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ConfigError(f"AE port must be 1 to 65535, not {self.port}")
        object.__setattr__(self, "operations", frozenset({ECHO, *self.operations}))


@dataclass(frozen=True, slots=True)
class CallerPolicy:
    """Calling AE title -> rule; ``callers is None`` admits anyone to everything."""

    callers: Mapping[str, CallerRule] | None = None

    def operations(self, calling_ae: str, host: str) -> frozenset[str] | None:
        """What ``calling_ae`` connecting from ``host`` may do; ``None``: not admitted."""
        if self.callers is None:
            return OPERATIONS
        rule = self.callers.get(calling_ae.strip())
        if rule is None or (rule.hosts and host not in rule.hosts):
            return None
        return rule.operations

    def destination(self, ae_title: str) -> tuple[str, int] | None:
        """Where a C-MOVE destination listens: an allowlisted AE with a port and exactly
        one host (which address to pick among several is not ours to guess)."""
        if self.callers is None:
            return None
        rule = self.callers.get(ae_title.strip())
        if rule is None or rule.port is None or len(rule.hosts) != 1:
            return None
        (host,) = rule.hosts
        return host, rule.port


OPEN: Final = CallerPolicy(None)


def _rule_from(value: Any) -> CallerRule:
    """A rule from a set of hosts (legacy: every operation), a dict or an object with
    ``hosts``/``operations``/``port``."""
    if isinstance(value, CallerRule):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"hosts", "operations", "port"}
        if unknown:
            raise ConfigError(f"unknown keys in a DICOM caller: {sorted(unknown)}")
        hosts, ops, port = value.get("hosts", ()), value.get("operations"), value.get("port")
    elif isinstance(value, (set, frozenset, list, tuple)):
        return CallerRule(hosts=_hosts(value), operations=OPERATIONS)
    else:
        hosts = getattr(value, "hosts", ())
        ops = getattr(value, "operations", None)
        port = getattr(value, "port", None)
    if isinstance(hosts, str) or not isinstance(hosts, Iterable):
        raise ConfigError(f"DICOM caller hosts must be a list, not {hosts!r}")
    if ops is not None and (isinstance(ops, str) or not isinstance(ops, Iterable)):
        raise ConfigError(f"DICOM caller operations must be a list, not {ops!r}")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise ConfigError(f"DICOM caller port must be a number, not {port!r}")
    return CallerRule(
        hosts=_hosts(hosts),
        operations=DEFAULT_OPERATIONS if ops is None else frozenset(operation(o) for o in ops),
        port=port,
    )


def _hosts(hosts: Iterable[Any]) -> frozenset[str]:
    out = set()
    for host in hosts:
        if not isinstance(host, str):
            raise ConfigError(f"a DICOM caller host must be text, not {host!r}")
        if host.strip() and host.strip() != "*":
            out.add(host.strip())
    return frozenset(out)


def _compact(text: str) -> dict[str, CallerRule]:
    out: dict[str, CallerRule] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        head, _, ops = entry.partition(":")
        title, _, where = head.partition("@")
        hosts_text, _, port_text = where.partition("/")
        try:
            port = int(port_text) if port_text.strip() else None
        except ValueError as exc:
            raise ConfigError(f"DICOM caller {entry!r}: port {port_text!r}") from exc
        out[_ae(title)] = CallerRule(
            hosts=_hosts(hosts_text.split("|")),
            operations=(
                frozenset(operation(o) for o in ops.split(",") if o.strip())
                if ops.strip()
                else DEFAULT_OPERATIONS
            ),
            port=port,
        )
    return out


def caller_policy(setting: object) -> CallerPolicy:
    """The policy for any form of the setting (module docstring); ``ConfigError`` when it
    cannot be read, so a typo fails at start instead of admitting or refusing by surprise.
    """
    if setting is None or isinstance(setting, CallerPolicy):
        return setting or OPEN
    if isinstance(setting, str):
        text = setting.strip()
        if not text:
            return OPEN
        if text.startswith("{"):
            try:
                setting = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"CAREGRAPH_DICOM_ALLOWED_CALLERS is not JSON: {exc}") from exc
        else:
            return CallerPolicy(_compact(text))
    if not isinstance(setting, Mapping):
        raise ConfigError(f"DICOM allowed callers: cannot read {type(setting).__name__}")
    return CallerPolicy({_ae(str(ae)): _rule_from(rule) for ae, rule in setting.items()})


def setting_value(value: object) -> object:
    """For the settings model: the text of ``CAREGRAPH_DICOM_ALLOWED_CALLERS`` (JSON or the
    compact form) as plain data, AE -> {"hosts", "operations", "port"}; anything else
    (already parsed, or unset) unchanged. ``ValueError`` for text that cannot be read (what
    a pydantic validator turns into a validation error)."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        callers = caller_policy(value).callers or {}
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc
    return {
        ae: {
            "hosts": sorted(rule.hosts),
            "operations": sorted(rule.operations),
            "port": rule.port,
        }
        for ae, rule in callers.items()
    }


__all__ = [
    "DEFAULT_OPERATIONS",
    "ECHO",
    "FIND",
    "GET",
    "MOVE",
    "OPEN",
    "OPERATIONS",
    "STORE",
    "CallerPolicy",
    "CallerRule",
    "caller_policy",
    "operation",
    "setting_value",
]

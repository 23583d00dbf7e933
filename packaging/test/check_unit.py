#!/usr/bin/env python3
"""Parses leverd.service as systemd does (systemd.syntax(7): sections, key=value,
comments, backslash continuations) and checks what the package promises of it
(docs/operations.md). Runs whether or not systemd is on the machine; where it
is, systemd-analyze verify checks the unit too (deb_test.sh unit).

    check_unit.py <leverd.service>
"""
import re
import sys

# Every directive the unit may use, by section: a misspelt one is an error
# here even where systemd-analyze is not there to warn about it.
KNOWN = {
    "Unit": {"Description", "Documentation", "After", "Wants", "Requires", "Before"},
    "Service": {
        "Type", "ExecStart", "StateDirectory", "StateDirectoryMode", "UMask", "DynamicUser", "KillMode",
        "TimeoutStopSec", "Restart", "RestartSec", "RestartPreventExitStatus", "LimitNOFILE",
        "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem", "PrivateMounts",
        "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules",
        "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc",
        "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "RemoveIPC",
        "RestrictAddressFamilies", "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
    },
    "Install": {"WantedBy"},
}


def parse(text):
    """Returns {section: {key: [values]}}; raises ValueError naming the line."""
    units, section, pending, start = {}, None, "", 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if pending:
            line, start_line = pending + line, start
        else:
            start_line = number
            if not line or line[0] in "#;":
                continue
        if line.endswith("\\"):
            pending, start = line[:-1] + " ", start_line
            continue
        pending = ""
        if line.startswith("["):
            m = re.fullmatch(r"\[([A-Za-z0-9-]+)\]", line)
            if not m:
                raise ValueError(f"line {start_line}: bad section header {line!r}")
            section = m.group(1)
            if section in units:
                raise ValueError(f"line {start_line}: section [{section}] twice")
            units[section] = {}
            continue
        m = re.fullmatch(r"([A-Za-z0-9]+)\s*=\s*(.*)", line)
        if not m:
            raise ValueError(f"line {start_line}: not `Key=value`: {line!r}")
        if section is None:
            raise ValueError(f"line {start_line}: {m.group(1)} outside a section")
        units[section].setdefault(m.group(1), []).append(m.group(2))
    if pending:
        raise ValueError("the file ends in a continuation")
    return units


def seconds(value):
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    if not m:
        raise ValueError(f"cannot read the time {value!r}")
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def check(units):
    problems = []
    for section, keys in units.items():
        if section not in KNOWN:
            problems.append(f"unknown section [{section}]")
            continue
        problems += [f"unknown key {k}= in [{section}]" for k in keys if k not in KNOWN[section]]
    service = units.get("Service", {})

    def one(key, section=service):
        values = section.get(key, [])
        return values[-1] if values else None

    want = {
        "Type": "exec",
        "ExecStart": "/usr/bin/leverd --config /etc/lever/leverd.conf",
        "StateDirectory": "lever",
        "Restart": "on-failure",
        "KillMode": "mixed",  # leverd drains and stops its instances itself
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "CapabilityBoundingSet": "",
    }
    for key, value in want.items():
        if one(key) != value:
            problems.append(f"{key}={one(key)!r}, want {value!r}")
    if "MemoryDenyWriteExecute" in service:
        problems.append("MemoryDenyWriteExecute breaks Node (V8 JIT) instances")
    if one("TimeoutStopSec") is None or seconds(one("TimeoutStopSec")) <= 10:
        problems.append("TimeoutStopSec must leave leverd more than its 10 s --grace to drain")
    if one("WantedBy", units.get("Install", {})) != "multi-user.target":
        problems.append("WantedBy= is not multi-user.target")
    if not one("Description", units.get("Unit", {})):
        problems.append("no Description=")
    return problems


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    try:
        units = parse(text)
    except ValueError as e:
        print(f"{sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    problems = check(units)
    for p in problems:
        print(f"{sys.argv[1]}: {p}", file=sys.stderr)
    if not problems:
        print(f"{sys.argv[1]}: {sum(len(v) for v in units.get('Service', {}).values())} [Service] settings, ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

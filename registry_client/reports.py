"""What an install says, line by line: the same words on the command line and the dashboard.

Why this exists: `pm-plugins install | upgrade` and the dashboard's search box report the same
results (installed, upgraded or downgraded, by whom, what it may do, a missing dependency, and
whether the booted host still runs another version); one function keeps the words one.
"""

from __future__ import annotations

from registry_client.installer import InstallResult

__all__ = ["install_report"]


def install_report(results: list[InstallResult], running: dict[str, str] | None) -> list[str]:
    """The lines for `results`; `running` is what the booted host runs (None: no host)."""
    lines = []
    for result in results:
        how = f"signed by {result.signed_by}" if result.key_id else result.signed_by
        verb = "already installed" if result.unchanged else "installed"
        if result.replaced:
            verb = f"{'downgraded' if result.downgrade else 'upgraded'} from {result.replaced}"
        lines.append(f"{result.name} {result.version}: {verb}, {how}")
        lines += [f"  may: {line.removeprefix('may ')}" for line in result.capabilities.describe()]
        lines += [
            f"  note: {result.name} needs plugin {name}, which is not installed"
            for name in result.missing
        ]
        now = running.get(result.name, "") if running is not None else None
        if now is not None and now != result.version and not result.unchanged:
            what = f"still runs {result.name} {now}" if now else f"does not run {result.name}"
            lines.append(
                f"  note: restart needed: the booted host {what}; restart it (`pm-plugins stop`,"
                f" then `boot`) to run {result.version}"
            )
    return lines

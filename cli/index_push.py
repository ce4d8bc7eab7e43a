"""`pm-plugins index push`: upload a published index to S3-compatible storage (from cron).

Thin over :func:`index.push`; `publish --to` (cli.index) pushes right after publishing, this
pushes the folder as it is, under the repository's lock, and with `--verify` also reads back
what the bucket claims to hold already (a listing is trusted otherwise).
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.index import _endpoint_option, _progress, _refusals, _repo_option, _said_push
from index import IndexRepo, S3Location, push

__all__ = ["COMMANDS"]


@click.command("push")
@_repo_option
@click.option("--to", required=True, metavar="s3://BUCKET/PREFIX", help="Where to upload.")
@_endpoint_option
@click.option("--dry-run", is_flag=True, help="List what would be uploaded; upload nothing.")
@click.option(
    "--verify", is_flag=True,
    help="Read back every object the bucket claims to hold already and compare its SHA-256.",
)  # fmt: skip
@click.option("--jobs", type=click.IntRange(1, 32), default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def push_cmd(
    repo_dir: Path, to: str, endpoint_url: str | None, dry_run: bool, verify: bool, jobs: int,
    as_json: bool,
) -> None:  # fmt: skip
    """Upload DIR/published to S3-compatible storage, timestamp.json last (e.g. from cron).

    Credentials and region come from the standard AWS settings (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_REGION; us-east-1 if none).
    """
    with _refusals():
        where = S3Location.parse(to)
        with IndexRepo.open(repo_dir) as repo:  # held: no publish changes the folder meanwhile
            result = push(
                repo.published_dir, where, endpoint_url=endpoint_url, dry_run=dry_run,
                verify=verify, jobs=jobs, progress=_progress,
            )  # fmt: skip
    _said_push(result, as_json)


COMMANDS = (push_cmd,)

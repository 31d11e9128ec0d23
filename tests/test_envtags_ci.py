"""CI tags that tell records apart across repositories, branches and retries."""

from __future__ import annotations

from pathlib import Path

from carbonwrap import envtags


def test_github_and_gitlab_project_tags(tmp_path: Path) -> None:
    env = {
        "GITHUB_REPOSITORY": "octo/repo",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_RUN_ATTEMPT": "2",
        "CI_PROJECT_PATH": "group/sub/project",
        "GITHUB_RUN_ID": "",  # empty: no tag
    }
    assert envtags.from_environment(env, tmp_path / "none") == {
        "github_repository": "octo/repo",
        "github_ref": "refs/heads/main",
        "github_run_attempt": "2",
        "gitlab_project_path": "group/sub/project",
    }

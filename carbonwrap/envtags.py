"""Tags read from the environment of CI systems, batch schedulers and Kubernetes. Pure."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

# (tag, environment variable), per system; a tag is set only where its variable is.
_SOURCES = (
    ("github_workflow", "GITHUB_WORKFLOW"),
    ("github_job", "GITHUB_JOB"),
    ("github_run_id", "GITHUB_RUN_ID"),
    ("github_sha", "GITHUB_SHA"),
    ("github_repository", "GITHUB_REPOSITORY"),
    ("github_ref", "GITHUB_REF"),
    ("github_run_attempt", "GITHUB_RUN_ATTEMPT"),
    ("gitlab_pipeline_id", "CI_PIPELINE_ID"),
    ("gitlab_job_id", "CI_JOB_ID"),
    ("gitlab_job_name", "CI_JOB_NAME"),
    ("gitlab_project_path", "CI_PROJECT_PATH"),
    ("slurm_job_id", "SLURM_JOB_ID"),
    ("slurm_step_id", "SLURM_STEP_ID"),
    ("slurm_node", "SLURMD_NODENAME"),
    ("slurm_task_id", "SLURM_ARRAY_TASK_ID"),
    # Kubernetes sets neither by itself; these are the names the downward API is usually mapped to.
    ("k8s_pod", "POD_NAME"),
    ("k8s_namespace", "POD_NAMESPACE"),
)
K8S_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def from_environment(env: Mapping[str, str], k8s_namespace_file: Path = K8S_NAMESPACE_FILE) -> dict[str, str]:
    """Tags that tell records from many machines apart. User tags are applied on top by the caller."""
    tags = {tag: env[var] for tag, var in _SOURCES if env.get(var)}
    if "KUBERNETES_SERVICE_HOST" in env:
        if "k8s_pod" not in tags and env.get("HOSTNAME"):
            tags["k8s_pod"] = env["HOSTNAME"]  # a pod's hostname is its name unless spec.hostname is set
        if "k8s_namespace" not in tags:
            with contextlib.suppress(OSError):
                tags["k8s_namespace"] = k8s_namespace_file.read_text().strip()
    return tags

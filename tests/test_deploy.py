"""deploy/ stays runnable as written: every genopt command line in it parses with genopt's own parser,
the Kubernetes YAML is valid objects of the kinds each file names (Kubernetes' own schemas, strict, no
cluster), and the pieces agree: workers reach the proxy's Service, a stopped worker has time to keep its
trial and its exit 75 is no failure, Slurm sends SIGTERM before the time limit to genopt itself, and the
Dockerfile copies files that exist."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from test_docs import _parse

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KINDS = {
    "secret.yaml": ["Secret"],
    "proxy.yaml": ["Deployment", "Service"],
    "study.yaml": ["Job"],
    "workers.yaml": ["Job"],
}


def objects(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if doc]


def containers(doc: dict) -> list[dict]:
    return doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


def kubernetes_commands() -> list[tuple[str, list[str]]]:
    """(file, argv after genopt) of every container that runs genopt, with $(VAR) set from its env."""
    found = []
    for name in KINDS:
        for doc in objects(name):
            for c in containers(doc):
                if c.get("command") == ["genopt"]:
                    values = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
                    args = [
                        re.sub(r"\$\((\w+)\)", lambda m, v=values: v.get(m[1], m[0]), a) for a in c["args"]
                    ]
                    found.append((f"kubernetes/{name}", args))
    return found


def slurm_commands() -> list[tuple[str, list[str]]]:
    """(file, argv after genopt) of each script's exec line, its variables set as the script sets them."""
    found = []
    for script in sorted((DEPLOY / "slurm").glob("*.sbatch")):
        values = {"GENOPT": "genopt"}
        for line in script.read_text().splitlines():
            assigned = re.match(r"^(\w+)=(.*)$", line)
            if assigned and assigned[1] not in values:
                value = assigned[2].split("  #")[0].strip().strip('"')
                default = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
                values[assigned[1]] = (
                    default[1] if default else f"<{assigned[1]}>" if "$(" in value else value
                )
            if line.startswith("exec "):
                line = re.sub(r"\$\{?(\w+)\}?", lambda m, v=values: v.get(m[1], m[0]), line)
                words = shlex.split(line)
                found.append((f"slurm/{script.name}", words[words.index("genopt") + 1 :]))
    return found


def docker_command() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    assert json.loads(re.search(r"^ENTRYPOINT (.*)$", text, flags=re.M)[1]) == ["genopt"]
    return json.loads(re.search(r"^CMD (.*)$", text, flags=re.M)[1])


COMMANDS = [*kubernetes_commands(), *slurm_commands(), ("Dockerfile", docker_command())]


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[f"{w}: {' '.join(a[:1])}" for w, a in COMMANDS])
def test_every_genopt_command_in_deploy_parses(where, argv):
    _parse(argv)


def test_deploy_runs_the_proxy_a_study_and_workers_on_both_schedulers():
    ran = {(where.split("/")[0], argv[0]) for where, argv in COMMANDS}
    assert ran >= {("kubernetes", "proxy"), ("kubernetes", "study"), ("kubernetes", "worker"),
                   ("slurm", "proxy"), ("slurm", "worker")}  # fmt: skip


@pytest.mark.parametrize("name", KINDS)
def test_the_yaml_is_valid_kubernetes_objects_of_the_kinds_named(name):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = objects(name)
    assert [doc["kind"] for doc in docs] == KINDS[name]
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_workers_reach_the_proxys_service_and_a_stopped_worker_keeps_its_trial():
    deployment, service = objects("proxy.yaml")
    (proxy,) = containers(deployment)
    port = int(proxy["args"][proxy["args"].index("--port") + 1])
    assert proxy["args"][proxy["args"].index("--host") + 1] == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {"grpc": port}
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    (served,) = service["spec"]["ports"]
    address = f"grpc://{service['metadata']['name']}:{served['port']}"
    assert served["targetPort"] == "grpc"
    (workers,) = objects("workers.yaml")
    for job in [*objects("study.yaml"), workers]:
        (c,) = containers(job)
        assert c["args"][c["args"].index("--storage") + 1] == address
        assert c["envFrom"] == [{"secretRef": {"name": objects("secret.yaml")[0]["metadata"]["name"]}}]
    pod = workers["spec"]["template"]["spec"]
    # genopt stores a cut trial within seconds of SIGTERM; the checkpoint's upload needs the rest.
    assert pod["terminationGracePeriodSeconds"] >= 60
    ignored = [r for r in workers["spec"]["podFailurePolicy"]["rules"] if r["action"] == "Ignore"]
    assert {"operator": "In", "values": [75]} in [r.get("onExitCodes") for r in ignored]
    assert workers["spec"]["parallelism"] > 1


def test_slurm_sends_sigterm_to_genopt_before_the_time_limit():
    workers = (DEPLOY / "slurm" / "workers.sbatch").read_text()
    signal = re.search(r"^#SBATCH --signal=B:TERM@(\d+)$", workers, flags=re.M)
    assert signal and int(signal[1]) >= 60
    assert re.search(r"^#SBATCH --array=\d+-\d+", workers, flags=re.M)
    # B: signals the batch shell alone, which exec has made genopt.
    runs = [
        line.split()[:3] for line in workers.splitlines() if not line.startswith("#") and " worker " in line
    ]
    assert runs == [["exec", "$GENOPT", "worker"]]
    proxy = (DEPLOY / "slurm" / "proxy.sbatch").read_text()
    assert "genopt-proxy.address" in proxy and "genopt-proxy.address" in workers


def test_the_dockerfile_builds_from_files_the_repository_has():
    text = (DEPLOY / "Dockerfile").read_text()
    copied = [word for line in re.findall(r"^COPY (.*)$", text, flags=re.M) for word in line.split()[:-1]]
    assert copied and all((ROOT / path).exists() for path in copied)
    admitted = {line[1:].rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
                if line.startswith("!")}  # fmt: skip
    assert set(copied) <= admitted
    assert "'.[postgres,s3,grpc]'" in text

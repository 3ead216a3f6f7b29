"""The Helm chart (helm/marelle), checked without a cluster.

The chart is linted and rendered by the real Helm engine (Helm's Go SDK, bundled by the
`helm-python-sdk` package), for the default values and for the production-like
`ci/production-values.yaml`; every rendered manifest is validated against the Kubernetes
OpenAPI schemas (`kubernetes-validate`, strict: unknown fields are errors), then the
properties the deployment relies on are asserted.
"""

import base64
import re
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "marelle"
PRODUCTION_VALUES = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())
RELEASE = "marelle"
NAMESPACE = "marelle"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a recent one.
KUBE_VERSIONS = ["1.27.0", "1.33.0"]
LINT_KUBE_VERSION = "v1.33.0"

VALUE_SETS = {"default": None, "production": PRODUCTION_VALUES}


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart, values=None):
    """Every manifest Helm would send at install time (hooks included), as dicts."""
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


@pytest.fixture(scope="module")
def manifests(chart):
    return {name: render(chart, values) for name, values in VALUE_SETS.items()}


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def one(docs, kind, name):
    found = find(docs, kind, name)
    assert len(found) == 1, (
        f"expected one {kind} {name}, found {[d['metadata']['name'] for d in find(docs, kind)]}"
    )
    return found[0]


def pod_specs(docs):
    """(owner, pod spec) of every workload."""
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    ]


def containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def worker_queues(docs):
    """Pool name -> queues, read from the worker Deployments' celery command lines."""
    pools = {}
    for d in find(docs, "Deployment"):
        component = d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        if component.startswith("worker-"):
            (container,) = d["spec"]["template"]["spec"]["containers"]
            args = container["args"]
            assert container["command"] == ["celery"] and "worker" in args
            (queues,) = [a.split("=", 1)[1] for a in args if a.startswith("--queues=")]
            pools[component.removeprefix("worker-")] = queues.split(",")
    return pools


def with_values(base, **overrides):
    """Deep-merged copy of `base` (None: defaults) with dotted-path overrides."""
    values = yaml.safe_load(yaml.safe_dump(base or {}))
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return values


# --- Helm: lint and schema ----------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_chart_lints_cleanly(value_set):
    report = helm.lint(
        CHART,
        VALUE_SETS[value_set],
        strict=True,
        kube_version=LINT_KUBE_VERSION,
        namespace=NAMESPACE,
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert report["errors"] == [] and problems == [], problems


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"web": {"replicas": "two"}}, "/web/replicas"),
        ({"web": {"resources": {"limits": None}}}, "/web/resources"),  # null deletes a default
        (
            {"web": {"resources": {"limits": {"cpu": "1", "memory": "lots"}}}},
            "/web/resources/limits/memory",
        ),
        ({"web": {"replica": 3}}, "/web"),  # a typo is not silently ignored
        ({"beat": {"replicas": 2}}, "/beat"),  # one beat, not configurable
        ({"platformDomain": "*.marelle.example.org"}, "/platformDomain"),
        ({"communes": {"customDomains": ["Not A Domain"]}}, "/communes/customDomains/0"),
        ({"extraSecretEnv": {"stripe-key": "x"}}, "'stripe-key' does not match"),
        ({"secretKey": "too-short"}, "/secretKey"),
        (
            {"securityContext": {"runAsNonRoot": False, "allowPrivilegeEscalation": False}},
            "/securityContext/runAsNonRoot",
        ),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
        ({"workers": {"payments": {"queues": []}}}, "/workers/payments/queues"),
        ({"database": {"url": "mysql://db/marelle"}}, "/database/url"),
    ],
)
def test_values_schema_rejects_bad_values(chart, values, complaint):
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(values)
    assert complaint in str(refused.value)


def test_lint_reports_schema_violations():
    report = helm.lint(CHART, {"web": {"replicas": "two"}}, kube_version=LINT_KUBE_VERSION)
    assert any("/web/replicas" in error for error in report["errors"]), report


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_values_files_satisfy_the_schema(chart, value_set):
    chart.validate_schema(VALUE_SETS[value_set])


# --- Kubernetes schemas -------------------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_manifest_is_valid_kubernetes(manifests, value_set, kube_version):
    invalid = []
    for doc in manifests[value_set]:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except (
            kubernetes_validate.ValidationError,
            kubernetes_validate.SchemaNotFoundError,
        ) as exc:
            invalid.append(
                f"{doc['kind']}/{doc['metadata']['name']}: {getattr(exc, 'message', exc)}"
            )
    assert not invalid, "\n".join(invalid)


def test_kubernetes_validation_has_teeth(manifests):
    deployment = yaml.safe_load(
        yaml.safe_dump(one(manifests["default"], "Deployment", f"{RELEASE}-web"))
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_expected_objects_are_rendered(manifests, value_set):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests[value_set]}
    expected = {
        ("Deployment", f"{RELEASE}-web"),
        ("Service", f"{RELEASE}-web"),
        ("HorizontalPodAutoscaler", f"{RELEASE}-web"),
        ("PodDisruptionBudget", f"{RELEASE}-web"),
        ("Deployment", f"{RELEASE}-worker-payments"),
        ("Deployment", f"{RELEASE}-worker-default"),
        ("Deployment", f"{RELEASE}-beat"),
        ("Job", f"{RELEASE}-migrate"),
        ("Secret", f"{RELEASE}"),
        ("Ingress", f"{RELEASE}"),
        ("PersistentVolumeClaim", f"{RELEASE}-media"),
    }
    if value_set == "production":
        expected |= {
            ("Job", f"{RELEASE}-communes-sync"),
            ("ConfigMap", f"{RELEASE}-communes"),
            ("Deployment", f"{RELEASE}-worker-pdf"),
        }
    assert expected <= kinds, expected - kinds
    assert len(kinds) == len(manifests[value_set]), "two objects share a kind and a name"


# --- workloads ----------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_exactly_one_beat_replaced_by_recreate(manifests, value_set):
    beats = [
        d
        for d in find(manifests[value_set], "Deployment")
        if any("beat" in c.get("args", []) for c in d["spec"]["template"]["spec"]["containers"])
    ]
    assert [b["metadata"]["name"] for b in beats] == [f"{RELEASE}-beat"]
    (beat,) = beats
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [
        h
        for h in find(manifests[value_set], "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == beat["metadata"]["name"]
    ]
    (container,) = beat["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["celery"]
    assert container["args"][:3] == ["--workdir=platform", "--app=marelle", "beat"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_web_runs_gunicorn_with_health_probes(manifests, value_set):
    web = one(manifests[value_set], "Deployment", f"{RELEASE}-web")
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["gunicorn"]
    assert "--chdir=platform" in container["args"]
    assert container["args"][-1] == "marelle.wsgi:application"
    domain = (VALUE_SETS[value_set] or {}).get("platformDomain", "marelle.example.org")
    expected_paths = {
        "livenessProbe": "/healthz/live",
        "readinessProbe": "/healthz/ready",
        "startupProbe": "/healthz/live",
    }
    for probe, path in expected_paths.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["port"] == "http"
        assert get["httpHeaders"] == [{"name": "Host", "value": domain}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MARELLE_ENV"] == "production" and env["DEBUG"] == "false"
    assert env["PLATFORM_DOMAIN"] == domain


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_payments_have_their_own_worker_pool(manifests, value_set):
    pools = worker_queues(manifests[value_set])
    assert pools["payments"] == ["payments"]
    for pool, queues in pools.items():
        if pool != "payments":
            assert "payments" not in queues, pool
    consumed = [q for queues in pools.values() for q in queues]
    assert len(consumed) == len(set(consumed)), f"a queue is consumed by two pools: {pools}"
    assert {"payments", "default", "mail", "pdf"} <= set(consumed)


def test_production_values_split_pdf_into_its_own_pool(manifests):
    pools = worker_queues(manifests["production"])
    assert pools["pdf"] == ["pdf"]
    assert "pdf" not in pools["default"]


def test_a_queue_in_two_pools_is_refused(chart):
    values = {"workers": {"default": {"queues": ["default", "mail", "payments"]}}}
    with pytest.raises(helm.HelmRenderError, match='queue "payments" is consumed by worker pools'):
        chart.render(values)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_run_as_non_root_with_a_locked_down_container(manifests, value_set):
    specs = pod_specs(manifests[value_set])
    assert len(specs) >= 5
    for owner, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, owner
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, owner
        assert spec["automountServiceAccountToken"] is False, owner
        for container in containers(spec):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, (owner, container["name"])
            assert sc["allowPrivilegeEscalation"] is False, (owner, container["name"])
            assert sc["readOnlyRootFilesystem"] is True, (owner, container["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (owner, container["name"])
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, (owner, container["name"])  # writable scratch space


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_container_has_resource_requests_and_limits(manifests, value_set):
    for owner, spec in pod_specs(manifests[value_set]):
        for container in containers(spec):
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (
                    owner,
                    container["name"],
                    bound,
                )


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_web_and_workers_have_autoscaler_and_disruption_budget(manifests, value_set):
    docs = manifests[value_set]
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in find(docs, "HorizontalPodAutoscaler")}
    pdbs = find(docs, "PodDisruptionBudget")
    scaled = [f"{RELEASE}-web", f"{RELEASE}-worker-payments", f"{RELEASE}-worker-default"]
    for deployment in find(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if name in hpas:
            assert hpas[name]["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            assert hpas[name]["spec"]["minReplicas"] <= hpas[name]["spec"]["maxReplicas"]
            # Replicas belong to the autoscaler: an upgrade must not reset them.
            assert "replicas" not in deployment["spec"], name
        if name == f"{RELEASE}-beat":
            continue
        covering = [
            p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, f"{name}: {len(covering)} PodDisruptionBudgets"
    assert set(scaled) <= set(hpas)


# --- migrations and communes --------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_migrations_run_as_a_pre_install_pre_upgrade_hook(manifests, value_set):
    docs = manifests[value_set]
    job = one(docs, "Job", f"{RELEASE}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    # One container: the shared schema, then every commune with bounded parallelism.
    assert "initContainers" not in spec
    (migrate,) = spec["containers"]
    expected = (VALUE_SETS[value_set] or {}).get("migrations", {}).get("maxParallel", 4)
    assert migrate["command"] + migrate["args"] == [
        "python",
        "platform/manage.py",
        "migrate_communes",
        "--noinput",
        f"--jobs={expected}",
        "--report=/tmp/migrate-report.json",
    ]
    # Its credentials exist before it runs: a hook Secret with a lower weight.
    (secret_name,) = {ref["secretRef"]["name"] for c in containers(spec) for ref in c["envFrom"]}
    secret = one(docs, "Secret", secret_name)
    hook = secret["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook["helm.sh/hook-weight"]) < int(annotations.get("helm.sh/hook-weight", "0"))
    assert "hook-succeeded" in hook["helm.sh/hook-delete-policy"]
    assert "SECRET_KEY" in secret["data"]
    if value_set == "production":
        assert {"DATABASE_URL", "REDIS_URL"} <= set(secret["data"])


def test_migrations_read_an_existing_secret_directly(chart):
    docs = render(chart, with_values(PRODUCTION_VALUES, existingSecret="marelle-credentials"))
    spec = one(docs, "Job", f"{RELEASE}-migrate")["spec"]["template"]["spec"]
    assert {ref["secretRef"]["name"] for c in containers(spec) for ref in c["envFrom"]} == {
        "marelle-credentials"
    }
    assert not find(docs, "Secret", f"{RELEASE}-migrate")
    # The release's Secret keeps only what existingSecret cannot hold: the commune secrets.
    secret = one(docs, "Secret", RELEASE)
    assert set(secret["data"]) == set(PRODUCTION_VALUES["extraSecretEnv"])
    web = one(docs, "Deployment", f"{RELEASE}-web")["spec"]["template"]["spec"]["containers"][0]
    assert [ref["secretRef"]["name"] for ref in web["envFrom"]] == ["marelle-credentials", RELEASE]


def test_communes_sync_job_is_fed_by_a_configmap_of_the_files(manifests):
    docs = manifests["production"]
    job = one(docs, "Job", f"{RELEASE}-communes-sync")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mount_path = "/etc/marelle/communes"
    assert container["command"] + container["args"] == [
        "python",
        "platform/manage.py",
        "communes",
        "sync",
        mount_path,
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["COMMUNES_CONFIG_DIR"] == mount_path
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == mount_path]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    configmap = one(docs, "ConfigMap", volume["configMap"]["name"])
    assert set(configmap["data"]) == {"beta.yaml"}
    assert yaml.safe_load(configmap["data"]["beta.yaml"])["slug"] == "beta"
    # Stripe keys named by the file reach the sync pod through the release's Secret.
    assert {"secretRef": {"name": RELEASE}} in container["envFrom"]


def test_no_sync_job_without_commune_files(manifests):
    assert not find(manifests["default"], "Job", f"{RELEASE}-communes-sync")
    assert not find(manifests["default"], "ConfigMap")


def test_the_repository_commune_files_deploy(chart):
    """What helm/README.md tells operators: --set-file communes.files.<slug>=<file>."""
    files = {p.stem: p.read_text() for p in sorted((REPO / "config" / "communes").glob("*.yaml"))}
    assert files
    named = set()
    for text in files.values():
        named |= set(re.findall(r"_env:\s*[\"']?([A-Z_][A-Z0-9_]*)", text))
    values = with_values(
        PRODUCTION_VALUES,
        **{"communes.files": files, "extraSecretEnv": {n: "placeholder" for n in named}},
    )
    docs = render(chart, values)
    configmap = one(docs, "ConfigMap", f"{RELEASE}-communes")
    assert set(configmap["data"]) == {f"{slug}.yaml" for slug in files}
    for slug, text in files.items():
        assert configmap["data"][f"{slug}.yaml"].strip() == text.strip()
    hosts = {rule["host"] for rule in one(docs, "Ingress", RELEASE)["spec"]["rules"]}
    for text in files.values():
        assert set(yaml.safe_load(text).get("domains") or []) <= hosts


def test_secret_env_named_by_a_commune_file_must_be_provided(chart):
    commune = "slug: gamma\nregies:\n  - payment:\n      settings:\n        secret_key_env: STRIPE_SECRET_KEY_GAMMA\n"
    values = with_values(PRODUCTION_VALUES, **{"communes.files": {"gamma": commune}})
    with pytest.raises(helm.HelmRenderError, match="STRIPE_SECRET_KEY_GAMMA"):
        chart.render(values)
    values["extraSecretEnv"]["STRIPE_SECRET_KEY_GAMMA"] = "sk_live_placeholder"
    secret = one(render(chart, values), "Secret", RELEASE)
    assert "STRIPE_SECRET_KEY_GAMMA" in secret["data"]


# --- ingress and secrets ------------------------------------------------------------------


def test_ingress_serves_the_wildcard_and_every_commune_domain(manifests):
    ingress = one(manifests["production"], "Ingress", RELEASE)
    domain = PRODUCTION_VALUES["platformDomain"]
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    own = {
        "portail-famille.alixan.fr",
        "enfance.pays-noyonnais.fr",  # communes.customDomains
        "famille.beta.fr",
    }  # `domains:` of the beta file
    assert set(hosts) == {domain, f"*.{domain}"} | own
    assert len(hosts) == len(set(hosts))
    for rule in ingress["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        assert path["backend"]["service"] == {"name": f"{RELEASE}-web", "port": {"name": "http"}}
    tls_hosts = [h for entry in ingress["spec"]["tls"] for h in entry["hosts"]]
    assert sorted(tls_hosts) == sorted(hosts)
    wildcard = [entry for entry in ingress["spec"]["tls"] if f"*.{domain}" in entry["hosts"]]
    assert wildcard == [{"hosts": [domain, f"*.{domain}"], "secretName": f"{RELEASE}-wildcard-tls"}]
    assert len({entry["secretName"] for entry in ingress["spec"]["tls"]}) == len(
        ingress["spec"]["tls"]
    )
    assert (
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    )
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_ingress_defaults(manifests):
    ingress = one(manifests["default"], "Ingress", RELEASE)
    assert {rule["host"] for rule in ingress["spec"]["rules"]} == {
        "marelle.example.org",
        "*.marelle.example.org",
    }
    assert "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]


def test_domains_under_the_platform_domain_are_left_to_the_wildcard(chart):
    values = with_values(
        None, **{"communes.customDomains": ["alixan.marelle.example.org", "portail.alixan.fr"]}
    )
    ingress = one(render(chart, values), "Ingress", RELEASE)
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [
        "marelle.example.org",
        "*.marelle.example.org",
        "portail.alixan.fr",
    ]


def test_credentials_live_in_secrets_and_reach_every_app_pod(manifests):
    docs = manifests["production"]
    secret = one(docs, "Secret", RELEASE)
    assert set(secret["data"]) == {
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "EMAIL_HOST_PASSWORD",
        "STRIPE_SECRET_KEY_BETA",
        "STRIPE_WEBHOOK_SECRET_BETA",
    }
    for name in ("web", "worker-payments", "worker-default", "worker-pdf", "beat"):
        (container,) = one(docs, "Deployment", f"{RELEASE}-{name}")["spec"]["template"]["spec"][
            "containers"
        ]
        assert {"secretRef": {"name": RELEASE}} in container["envFrom"], name
    # No credential is written in clear outside a Secret.
    clear = [
        PRODUCTION_VALUES["database"]["url"],
        PRODUCTION_VALUES["redis"]["url"],
        PRODUCTION_VALUES["secretKey"],
        "sk_test_placeholder",
        "whsec_placeholder",
    ]
    for doc in docs:
        if doc["kind"] != "Secret":
            text = yaml.safe_dump(doc)
            assert not [c for c in clear if c in text], f"{doc['kind']}/{doc['metadata']['name']}"


def test_secret_key_is_generated_when_not_given(manifests):
    secret = one(manifests["default"], "Secret", RELEASE)
    assert len(base64.b64decode(secret["data"]["SECRET_KEY"])) >= 40


VARIANTS = {
    "fixed replicas, percentage budgets": {
        "web.autoscaling": {"enabled": False},
        "web.pdb": {"enabled": True, "minAvailable": "50%"},
        "workers.payments.autoscaling": {"enabled": False},
    },
    "no cert-manager, own wildcard certificate, no apex": {
        "ingress.tls": {
            "enabled": True,
            "wildcardSecretName": "wildcard-cert",
            "certManager": {"enabled": False},
        },
        "ingress.apex": False,
    },
    "namespaced issuer": {
        "ingress.tls.certManager": {
            "enabled": True,
            "clusterIssuer": "",
            "issuer": "letsencrypt-staging",
        },
    },
    "managed elsewhere": {
        "existingSecret": "marelle-credentials",
        "extraSecretEnvFrom": ["marelle-payment-keys"],
        "communes.existingConfigMap": "marelle-communes",
        "media.persistence": {"enabled": True, "existingClaim": "marelle-media-efs"},
        "image.digest": "sha256:" + "a" * 64,
        "serviceAccountName": "marelle",
    },
    "long release name, everything optional off": {
        "fullnameOverride": "marelle-portail-famille-communes-de-la-drome-et-environs",
        "ingress.enabled": False,
        "beat.enabled": False,
        "migrations.enabled": False,
        "media.persistence": {"enabled": False},
        "workers.default": {"enabled": False},
    },
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_value_variants_render_valid_kubernetes(chart, variant):
    values = with_values(None, **VARIANTS[variant])
    chart.validate_schema(values)
    docs = render(chart, values)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)
        assert len(doc["metadata"]["name"]) <= 63 or doc["kind"] in ("Secret", "ConfigMap")
    names = {d["metadata"]["name"] for d in docs}
    if variant == "managed elsewhere":
        web = one(docs, "Deployment", f"{RELEASE}-web")["spec"]["template"]["spec"]
        assert web["serviceAccountName"] == "marelle"
        assert web["containers"][0]["image"] == "marelle@sha256:" + "a" * 64
        assert {
            "name": "media",
            "persistentVolumeClaim": {"claimName": "marelle-media-efs"},
        } in web["volumes"]
        sync = one(docs, "Job", f"{RELEASE}-communes-sync")["spec"]["template"]["spec"]
        assert {"name": "communes", "configMap": {"name": "marelle-communes"}} in sync["volumes"]
        assert not find(docs, "PersistentVolumeClaim") and not find(docs, "ConfigMap")
    if variant == "fixed replicas, percentage budgets":
        assert one(docs, "Deployment", f"{RELEASE}-web")["spec"]["replicas"] == 2
        assert one(docs, "PodDisruptionBudget", f"{RELEASE}-web")["spec"] == {
            "minAvailable": "50%",
            "selector": {
                "matchLabels": one(docs, "Deployment", f"{RELEASE}-web")["spec"]["selector"][
                    "matchLabels"
                ]
            },
        }
    if variant == "no cert-manager, own wildcard certificate, no apex":
        ingress = one(docs, "Ingress", RELEASE)
        assert not any(
            k.startswith("cert-manager.io/") for k in ingress["metadata"].get("annotations", {})
        )
        assert ingress["spec"]["tls"] == [
            {"hosts": ["*.marelle.example.org"], "secretName": "wildcard-cert"}
        ]
        assert [r["host"] for r in ingress["spec"]["rules"]] == ["*.marelle.example.org"]
    if variant == "namespaced issuer":
        annotations = one(docs, "Ingress", RELEASE)["metadata"]["annotations"]
        assert annotations == {"cert-manager.io/issuer": "letsencrypt-staging"}
    if variant == "long release name, everything optional off":
        assert not find(docs, "Ingress") and not find(docs, "Job") and "beat" not in str(names)
        assert worker_queues(docs).keys() == {"payments"}

"""The Helm chart: lint, render per values set, and what an installed Signet would look like.

Renders go through helm-python (Helm's Go engine, offline: `lookup` finds nothing, as on a first
install). Every rendered object is validated against the Kubernetes schemas of KUBE_VERSION.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from helm_python.chart import lint
from helm_python.errors import HelmError

from tests.unit.chart.rendering import CHART, NAMESPACE, ROOT, Obj, Rendered, chart, ci_values, render

KUBE_VERSION = "1.33.0"
# Kinds kubernetes-validate has no schema for: our own CRDs' kinds and cert-manager's.
NO_SCHEMA_KINDS = {"Issuer", "ClusterIssuer", "Certificate", "ClusterImagePolicy", "ImagePolicy", "TrustRoot"}

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
SECRET_VALUES: Obj = {"tls": {"mode": "secret", "secretName": "my-webhook-tls",
                              "caBundle": base64.b64encode(CA_PEM.encode()).decode()}}
PULL_SECRETS_VALUES: Obj = {"pullSecrets": {"enabled": True}, "prewarm": {"enabled": True}}
PULL_SECRETS_NS_VALUES: Obj = {"pullSecrets": {"enabled": True, "namespaces": ["team-a", "team-b"]}}
CLIENT_CA_VALUES: Obj = {"server": {"metricsPort": 9090, "clientCA": {"pem": CA_PEM}}}

VALUE_SETS: dict[str, Obj] = {
    "default": {},
    "cert-manager": ci_values("cert-manager-values.yaml"),
    "ha": ci_values("ha-values.yaml"),
    "mutation": ci_values("mutation-values.yaml"),
    "secret": SECRET_VALUES,
    "pull-secrets": PULL_SECRETS_VALUES,
    "pull-secrets-namespaced": PULL_SECRETS_NS_VALUES,
    "client-ca": CLIENT_CA_VALUES,
}


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def any_render(request: pytest.FixtureRequest) -> Rendered:
    return Rendered(VALUE_SETS[request.param])


@pytest.fixture(scope="module")
def default() -> Rendered:
    return Rendered()


@pytest.fixture(scope="module")
def cert_manager() -> Rendered:
    return Rendered(VALUE_SETS["cert-manager"])


@pytest.fixture(scope="module")
def ha() -> Rendered:
    return Rendered(VALUE_SETS["ha"])


@pytest.fixture(scope="module")
def mutation() -> Rendered:
    return Rendered(VALUE_SETS["mutation"])


@pytest.fixture(scope="module")
def secret_mode() -> Rendered:
    return Rendered(SECRET_VALUES)


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


# --- lint and schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("values_name", ["default", "cert-manager", "ha", "mutation", "secret"])
def test_helm_lint_has_no_errors(values_name: str) -> None:
    report = lint(str(CHART), VALUE_SETS[values_name] or None, namespace=NAMESPACE, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_metadata() -> None:
    meta = chart().metadata
    assert (meta["apiVersion"], meta["name"], meta["appVersion"]) == ("v2", "signet", "0.1.0")


def test_every_rendered_object_is_valid_for_kubernetes(any_render: Rendered) -> None:
    checked = 0
    for obj in any_render.objects:
        if obj["kind"] in NO_SCHEMA_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 8


def test_only_expected_kinds_skip_schema_validation(any_render: Rendered) -> None:
    skipped = {o["kind"] for o in any_render.objects if o["kind"] in NO_SCHEMA_KINDS}
    assert skipped <= {"Issuer", "Certificate"}


def test_values_schema_is_draft7_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    chart().validate_schema(chart().values)  # Helm's own validator, as install runs it


def test_values_schema_describes_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(values: dict[str, Any], node: Obj, path: str) -> None:
        for key, value in values.items():
            props = node.get("properties", {})
            assert key in props, f"{path}{key} is missing from values.schema.json"
            if isinstance(value, dict) and props[key].get("properties"):
                walk(value, props[key], f"{path}{key}.")

    walk(chart().values, schema, "")


def test_values_yaml_comments_every_value() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):\s*(\S.*)?$", line)
        if not m or not m.group(3):  # parent keys (a nested block follows) need no comment
            continue
        previous = lines[i - 1].strip() if i else ""
        if not previous.startswith("#"):
            undocumented.append(line.strip())
    assert undocumented == []


@pytest.mark.parametrize("mode", ["bogus", "Helm"])
def test_schema_rejects_unknown_tls_mode(mode: str) -> None:
    with pytest.raises(HelmError, match=r"/tls/mode"):
        render({"tls": {"mode": mode}})


def test_schema_rejects_unknown_top_level_value() -> None:
    with pytest.raises(HelmError, match=r"additional properties 'replicaCount' not allowed"):
        render({"replicaCount": 3})


@pytest.mark.parametrize(("values", "message"), [
    ({"webhook": {"timeoutSeconds": 8}},
     r"webhook\.timeoutSeconds \(8\) must be greater than server\.deadlineSeconds \(8\)"),
    ({"webhook": {"timeoutSeconds": 5}, "server": {"deadlineSeconds": 6}},
     r"webhook\.timeoutSeconds \(5\) must be greater than server\.deadlineSeconds \(6\)"),
    ({"tls": {"mode": "secret", "caBundle": "Zm9v"}}, r"tls\.mode=secret needs tls\.secretName"),
    ({"tls": {"mode": "secret", "secretName": "x"}}, r"tls\.mode=secret needs tls\.caBundle"),
    ({"tls": {"mode": "helm", "caBundle": "Zm9v"}}, r"tls\.caBundle is only used with tls\.mode=secret"),
    ({"replicas": 0}, r"/replicas.*minimum"),
    ({"replicas": 1}, r"podDisruptionBudget\.minAvailable \(1\) must be below replicas \(1\)"),
    ({"trustRoot": {"source": "tufMirror", "tufMirror": {"rootJson": "{}"}}},
     r"tufMirror needs trustRoot\.tufMirror\.url"),
    ({"trustRoot": {"source": "tufMirror", "tufMirror": {"url": "https://tuf.example"}}},
     r"tufMirror needs the TUF root"),
    ({"trustRoot": {"source": "trustedRoot"}}, r"trustedRoot needs trustRoot\.trustedRoot\.json"),
    ({"pullSecrets": {"namespaces": ["team-a"]}}, r"pullSecrets\.enabled is false"),
    ({"webhook": {"failurePolicy": "Allow"}}, r"/webhook/failurePolicy"),
    ({"server": {"noMatchPolicy": "permit"}}, r"/server/noMatchPolicy"),
])
def test_impossible_values_fail_the_render_with_a_clear_message(values: Obj, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(values)


def test_single_replica_is_possible_without_a_pdb() -> None:
    r = Rendered({"replicas": 1, "podDisruptionBudget": {"enabled": False}})
    assert r.deployment["spec"]["replicas"] == 1
    assert r.of_kind("PodDisruptionBudget") == []


# --- the admission webhooks --------------------------------------------------------------------


def test_validating_webhook_fails_closed_without_side_effects(any_render: Rendered) -> None:
    hooks = any_render.webhooks()
    assert len(hooks) == 1
    for hook in hooks:
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["clientConfig"]["service"]["path"] == "/validate"


def test_webhook_timeout_is_above_the_server_deadline(any_render: Rendered) -> None:
    deadline = float(any_render.flag("--deadline") or "nan")
    for hook in any_render.webhooks() + any_render.webhooks("MutatingWebhookConfiguration"):
        assert hook["timeoutSeconds"] > deadline


def test_default_timeout_and_deadline(default: Rendered) -> None:
    assert default.webhooks()[0]["timeoutSeconds"] == 10
    assert default.flag("--deadline") == "8"


def test_namespace_selector_never_blocks_kube_system_or_the_release_namespace(any_render: Rendered) -> None:
    for hook in any_render.webhooks() + any_render.webhooks("MutatingWebhookConfiguration"):
        exprs = hook["namespaceSelector"]["matchExpressions"]
        by_name = [e for e in exprs if e["key"] == "kubernetes.io/metadata.name"]
        assert len(by_name) == 1
        assert by_name[0]["operator"] == "NotIn"
        assert {"kube-system", NAMESPACE} <= set(by_name[0]["values"])


def test_namespaces_opt_out_by_label_by_default(default: Rendered) -> None:
    exprs = default.webhooks()[0]["namespaceSelector"]["matchExpressions"]
    assert {"key": "signet.dev/exclude", "operator": "NotIn", "values": ["true"]} in exprs
    assert not any(e["key"] == "signet.dev/include" for e in exprs)


def test_opt_in_requires_the_include_label(mutation: Rendered) -> None:
    for hook in mutation.webhooks() + mutation.webhooks("MutatingWebhookConfiguration"):
        exprs = hook["namespaceSelector"]["matchExpressions"]
        assert {"key": "signet.dev/include", "operator": "In", "values": ["true"]} in exprs


def test_extra_excluded_namespaces_and_object_selector_pass_through() -> None:
    selector = {"matchExpressions": [{"key": "signet.dev/skip", "operator": "DoesNotExist"}]}
    r = Rendered({"webhook": {"excludeNamespaces": ["monitoring"], "objectSelector": selector}})
    hook = r.webhooks()[0]
    names = next(e for e in hook["namespaceSelector"]["matchExpressions"] if e["key"] == "kubernetes.io/metadata.name")
    assert names["values"] == ["kube-system", NAMESPACE, "monitoring"]
    assert hook["objectSelector"] == selector


def test_webhook_rules_cover_every_workload_kind(default: Rendered) -> None:
    covered: dict[tuple[str, str], set[str]] = {}
    for rule in default.webhooks()[0]["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                covered[(group, resource)] = set(rule["operations"])
    create_update = {"CREATE", "UPDATE"}
    for key in [("", "pods"), ("", "replicationcontrollers"), ("", "podtemplates"), ("apps", "deployments"),
                ("apps", "replicasets"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("batch", "jobs"),
                ("batch", "cronjobs")]:
        assert covered.get(key) == create_update, key
    assert covered[("", "pods/ephemeralcontainers")] == {"UPDATE"}
    assert not any("*" in k[0] or "*" in k[1] for k in covered)


def test_mutating_webhook_only_when_enabled(default: Rendered, mutation: Rendered) -> None:
    assert default.of_kind("MutatingWebhookConfiguration") == []
    hooks = mutation.webhooks("MutatingWebhookConfiguration")
    assert len(hooks) == 1
    assert hooks[0]["clientConfig"]["service"]["path"] == "/mutate"
    assert hooks[0]["failurePolicy"] == "Fail"
    assert hooks[0]["sideEffects"] == "None"
    assert hooks[0]["rules"] == mutation.webhooks()[0]["rules"]


def test_webhook_calls_the_service_on_its_port(any_render: Rendered) -> None:
    service = any_render.one("Service")
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == "https"]
    assert (port["port"], port["targetPort"]) == (443, "https")
    assert selector_matches({"matchLabels": service["spec"]["selector"]},
                            any_render.deployment["spec"]["template"]["metadata"]["labels"])
    for hook in any_render.webhooks() + any_render.webhooks("MutatingWebhookConfiguration"):
        ref = hook["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"], ref["port"]) == (service["metadata"]["name"], NAMESPACE, 443)


# --- TLS modes --------------------------------------------------------------------------------


def test_helm_mode_generates_one_ca_shared_by_secret_and_webhook(default: Rendered) -> None:
    secret = default.one("Secret", "signet-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    assert base64.b64decode(default.webhooks()[0]["clientConfig"]["caBundle"]) == ca_pem

    ca = x509.load_pem_x509_certificate(ca_pem)
    cert_pem = base64.b64decode(secret["data"]["tls.crt"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.issuer == ca.subject
    public_key = ca.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"signet.{NAMESPACE}.svc" in sans

    annotations = default.deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/tls"] == hashlib.sha256(cert_pem).hexdigest()


def test_helm_mode_reuses_the_existing_secret_on_upgrade() -> None:
    # Offline renders cannot answer `lookup`; check the template does look the Secret up and
    # reuses all three of cert, key and CA from it.
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in helpers
    for key in ("tls.crt", "tls.key", "ca.crt"):
        assert f'(index $existing.data "{key}" | b64dec)' in helpers


def test_cert_manager_mode_injects_the_ca(cert_manager: Rendered) -> None:
    certificate = cert_manager.one("Certificate", "signet-tls")
    for kind in ("ValidatingWebhookConfiguration",):
        config = cert_manager.one(kind)
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/signet-tls"
        assert all("caBundle" not in w["clientConfig"] for w in config["webhooks"])
    assert f"signet.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    issuer = cert_manager.one("Issuer", certificate["spec"]["issuerRef"]["name"])
    ca_cert = cert_manager.one("Certificate", "signet-ca")
    assert issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]
    assert ca_cert["spec"]["isCA"] is True
    assert cert_manager.one("Issuer", ca_cert["spec"]["issuerRef"]["name"])["spec"] == {"selfSigned": {}}
    tls_volume = next(v for v in cert_manager.pod_spec["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    assert cert_manager.of_kind("Secret") == []


def test_cert_manager_mode_annotates_the_mutating_webhook_too() -> None:
    r = Rendered({**VALUE_SETS["cert-manager"], "mutation": {"enabled": True}})
    config = r.one("MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/signet-tls"


def test_cert_manager_with_an_existing_issuer_creates_no_issuers() -> None:
    ref = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    r = Rendered({"tls": {"mode": "certManager", "certManager": {"issuerRef": ref}}})
    assert r.of_kind("Issuer") == []
    assert r.one("Certificate")["spec"]["issuerRef"] == ref


def test_secret_mode_uses_the_given_secret_and_ca(secret_mode: Rendered) -> None:
    assert secret_mode.webhooks()[0]["clientConfig"]["caBundle"] == SECRET_VALUES["tls"]["caBundle"]
    assert secret_mode.of_kind("Secret") == []
    assert secret_mode.of_kind("Certificate") == []
    tls_volume = next(v for v in secret_mode.pod_spec["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == "my-webhook-tls"


# --- the webhook pods -------------------------------------------------------------------------


def test_container_args_follow_the_cli_contract(default: Rendered) -> None:
    assert default.args[:11] == ["serve", "--host", "0.0.0.0", "--port", "8443",
                                 "--tls-cert", "/etc/signet/tls/tls.crt", "--tls-key", "/etc/signet/tls/tls.key",
                                 "--policies", "/etc/signet/policies"]
    assert default.flag("--no-match-policy") == "deny"
    assert default.flag("--on-error") == "deny"
    assert "command" not in default.container  # the image's entrypoint is `signet`
    for absent in ("--allow-http-registry", "--prewarm", "--pull-secrets", "--trusted-root", "--tuf-mirror"):
        assert absent not in default.args


def test_flags_from_values() -> None:
    r = Rendered({"registry": {"allowHttp": True}, "prewarm": {"enabled": True}, "pullSecrets": {"enabled": True},
                  "server": {"noMatchPolicy": "warn", "onError": "allow", "deadlineSeconds": 5.5,
                             "extraArgs": ["--log-format", "json"]}})
    assert {"--allow-http-registry", "--prewarm", "--pull-secrets"} <= set(r.args)
    assert (r.flag("--no-match-policy"), r.flag("--on-error"), r.flag("--deadline")) == ("warn", "allow", "5.5")
    assert r.args[-2:] == ["--log-format", "json"]


def test_trusted_root_from_a_configmap() -> None:
    r = Rendered({"trustRoot": {"source": "trustedRoot", "trustedRoot": {"json": '{"mediaType": "x"}'}}})
    assert r.flag("--trusted-root") == "/etc/signet/trust-root/trusted_root.json"
    cm = r.one("ConfigMap", "signet-trust-root")
    assert json.loads(cm["data"]["trusted_root.json"]) == {"mediaType": "x"}
    mount = next(m for m in r.container["volumeMounts"] if m["name"] == "trust-root")
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/signet/trust-root", True)


def test_tuf_mirror_with_an_existing_configmap() -> None:
    r = Rendered({"trustRoot": {"source": "tufMirror",
                                "tufMirror": {"url": "https://tuf.example.com", "existingConfigMap": "corp-tuf-root"}}})
    assert r.flag("--tuf-mirror") == "https://tuf.example.com"
    assert r.flag("--tuf-root") == "/etc/signet/trust-root/root.json"
    assert not any(cm["metadata"]["name"].endswith("trust-root") for cm in r.of_kind("ConfigMap"))
    volume = next(v for v in r.pod_spec["volumes"] if v["name"] == "trust-root")
    assert volume["configMap"]["name"] == "corp-tuf-root"


def test_pods_run_as_numeric_non_root_with_a_read_only_root(any_render: Rendered) -> None:
    pod_sc = any_render.pod_spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = any_render.container["securityContext"]
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] == 65532
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_probes_use_healthz_and_readyz_over_https(default: Rendered) -> None:
    c = default.container
    assert c["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_writable_paths_are_emptydirs_and_config_is_read_only(default: Rendered) -> None:
    volumes = {v["name"]: v for v in default.pod_spec["volumes"]}
    mounts = {m["mountPath"]: m for m in default.container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in default.container["env"]}
    for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME"):
        cache_mount = next(p for p in mounts if env[var].startswith(p + "/"))
        assert "emptyDir" in volumes[mounts[cache_mount]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    for path in ("/etc/signet/tls", "/etc/signet/policies"):
        assert mounts[path]["readOnly"] is True
    assert volumes["tls"]["secret"]["secretName"] == "signet-tls"
    assert default.container["resources"]["requests"] and default.container["resources"]["limits"]


def test_policies_come_from_configmaps(default: Rendered) -> None:
    values = {"policies": {"release.yaml": "apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\n",
                           "as-map.yml": {"apiVersion": "policy.signet.dev/v1alpha1", "kind": "ClusterImagePolicy"}},
              "extraPolicyConfigMaps": ["team-policies"]}
    r = Rendered(values)
    data = r.one("ConfigMap", "signet-policies")["data"]
    assert yaml.safe_load(data["release.yaml"])["kind"] == "ClusterImagePolicy"
    assert yaml.safe_load(data["as-map.yml"])["kind"] == "ClusterImagePolicy"
    sources = next(v for v in r.pod_spec["volumes"] if v["name"] == "policies")["projected"]["sources"]
    assert [s["configMap"]["name"] for s in sources] == ["signet-policies", "team-policies"]

    def checksum(x: Rendered) -> str:
        annotations: dict[str, str] = x.deployment["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/policies"]

    assert checksum(r) != checksum(default)


def test_policy_file_names_must_be_yaml() -> None:
    with pytest.raises(HelmError, match=r"'release\.txt' does not match pattern"):
        render({"policies": {"release.txt": "x"}})


def test_two_replicas_spread_over_nodes_with_a_pdb(default: Rendered) -> None:
    assert default.deployment["spec"]["replicas"] == 2
    assert default.deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_labels = default.deployment["spec"]["template"]["metadata"]["labels"]
    pdb = default.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert selector_matches(pdb["spec"]["selector"], pod_labels)
    (term,) = default.pod_spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selector_matches(term["podAffinityTerm"]["labelSelector"], pod_labels)


def test_ha_values(ha: Rendered) -> None:
    assert ha.deployment["spec"]["replicas"] == 3
    assert ha.one("PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert ha.pod_spec["priorityClassName"] == "system-cluster-critical"
    assert ha.pod_spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert "podAntiAffinity" in ha.pod_spec["affinity"]


def test_scheduling_overrides() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["infra"]}]}]}}}
    tolerations = [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}]
    r = Rendered({"affinity": affinity, "tolerations": tolerations, "nodeSelector": {"kubernetes.io/os": "linux"}})
    assert r.pod_spec["affinity"] == affinity
    assert r.pod_spec["tolerations"] == tolerations
    assert r.pod_spec["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_pods_use_the_chart_service_account(default: Rendered) -> None:
    sa = default.one("ServiceAccount")
    assert default.pod_spec["serviceAccountName"] == sa["metadata"]["name"]
    (subject,) = default.one("ClusterRoleBinding")["subjects"]
    assert (subject["name"], subject["namespace"]) == (sa["metadata"]["name"], NAMESPACE)


# --- RBAC -------------------------------------------------------------------------------------


def rules_of(r: Rendered, kind: str = "ClusterRole") -> list[Obj]:
    return [rule for role in r.of_kind(kind) for rule in role["rules"]]


def grants(rules: list[Obj], group: str, resource: str) -> set[str]:
    return {v for rule in rules if group in rule["apiGroups"] and resource in rule["resources"] for v in rule["verbs"]}


def test_rbac_has_no_wildcards(any_render: Rendered) -> None:
    for rule in rules_of(any_render) + rules_of(any_render, "Role"):
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not any("*" in res for res in rule["resources"])


def test_rbac_is_least_privilege_by_default(default: Rendered) -> None:
    rules = rules_of(default)
    for res in ("clusterimagepolicies", "imagepolicies", "trustroots"):
        assert grants(rules, "policy.signet.dev", res) == {"get", "list", "watch"}
        assert grants(rules, "policy.signet.dev", f"{res}/status") == {"update", "patch"}
    assert grants(rules, "", "events") == {"create", "patch"}
    assert grants(rules, "events.k8s.io", "events") == {"create", "patch"}
    assert grants(rules, "", "serviceaccounts") == {"get"}
    assert grants(rules, "", "secrets") == set()
    assert grants(rules, "", "pods") == set()
    assert grants(rules, "", "configmaps") == {"get"}
    # Secrets are read only in Signet's own namespace (keys named by ClusterImagePolicies).
    (keys,) = default.of_kind("Role")
    assert keys["metadata"]["namespace"] == NAMESPACE and grants(keys["rules"], "", "secrets") == {"get"}
    writes = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"}
    for rule in rules:
        if rule["verbs"] and set(rule["verbs"]) & writes:
            assert rule["resources"] == ["events"] or all(r.endswith("/status") for r in rule["resources"]), rule


def test_pull_secrets_grant_cluster_wide_secret_reads_only_when_enabled() -> None:
    r = Rendered(PULL_SECRETS_VALUES)
    assert grants(rules_of(r), "", "secrets") == {"get"}
    assert grants(rules_of(r), "", "pods") == {"get", "list"}


def test_pull_secrets_in_listed_namespaces_use_roles() -> None:
    r = Rendered(PULL_SECRETS_NS_VALUES)
    assert grants(rules_of(r), "", "secrets") == set()
    roles = [role for role in r.of_kind("Role") if role["metadata"]["name"].endswith("-pull-secrets")]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["team-a", "team-b"]
    assert all(grants(role["rules"], "", "secrets") == {"get"} for role in roles)
    bindings = [b for b in r.of_kind("RoleBinding") if b["metadata"]["name"].endswith("-pull-secrets")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == NAMESPACE for b in bindings)


# --- helm test, NOTES, CRDs -------------------------------------------------------------------


def test_helm_test_pod_calls_healthz_with_the_ca(any_render: Rendered) -> None:
    hooks = [p for p in any_render.of_kind("Pod") if p["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    (pod,) = hooks
    (container,) = pod["spec"]["containers"]
    assert container["image"] == any_render.container["image"]
    assert container["command"][:2] == ["python", "-c"]
    script = container["command"][2]
    assert "urllib.request" in script and "/healthz" in script
    env = {e["name"]: e.get("value") for e in container["env"]}
    metrics_port = any_render.values.get("server", {}).get("metricsPort")
    if metrics_port:  # health and readiness live on the plain-HTTP metrics port then
        assert env["SIGNET_URL"] == f"http://signet.{NAMESPACE}.svc:{metrics_port}"
    else:
        assert env["SIGNET_URL"] == f"https://signet.{NAMESPACE}.svc:443"
    if any_render.values.get("tls", {}).get("mode") == "secret":
        assert env["SIGNET_CA_PEM"] == CA_PEM
    else:
        (volume,) = pod["spec"]["volumes"]
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        assert "/etc/signet/ca/ca.crt" in script
    assert container["securityContext"]["runAsNonRoot"] is True
    # The Deployment's ReplicaSet must not adopt the test pod.
    assert not selector_matches(any_render.deployment["spec"]["selector"], pod["metadata"]["labels"])


def test_notes_explain_rollout_and_denials() -> None:
    notes = render()["signet/templates/NOTES.txt"]
    for phrase in ("helm test", "warn", "enforce", "signet denials", "signet.dev/exclude=true"):
        assert phrase in notes


def test_chart_crds_are_a_byte_identical_copy_of_policies_crds() -> None:
    source = {p.name: p.read_bytes() for p in sorted((ROOT / "policies" / "crds").glob("*.yaml"))}
    copy = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert source, "policies/crds/*.yaml is missing"
    assert copy == source, "charts/signet/crds differs from policies/crds: run scripts/sync-chart-crds"


def test_chart_ships_the_three_crds() -> None:
    names = set()
    for crd in chart().crds:
        for doc in yaml.safe_load_all(crd["data"]):
            if doc:
                names.add(doc["metadata"]["name"])
    assert names == {"clusterimagepolicies.policy.signet.dev", "imagepolicies.policy.signet.dev",
                     "trustroots.policy.signet.dev"}


def test_readme_values_table_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()

    def leaves(values: dict[str, Any], prefix: str) -> list[str]:
        out = []
        for key, value in values.items():
            if isinstance(value, dict) and value:
                out += leaves(value, f"{prefix}{key}.")
            else:
                out.append(f"{prefix}{key}")
        return out

    missing = [key for key in leaves(chart().values, "") if f"| `{key}` |" not in readme]
    assert missing == []

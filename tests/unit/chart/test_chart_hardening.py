"""The chart's side of issue 9: server bounds as flags, the metrics port, client-certificate callers."""

from __future__ import annotations

import pytest
from helm_python.errors import HelmError

from tests.unit.chart.rendering import Obj, Rendered, render
from tests.unit.chart.test_chart import CA_PEM, CLIENT_CA_VALUES


def test_bounds_are_passed_with_their_defaults() -> None:
    rendered = Rendered()
    assert rendered.flag("--max-images") == "256" and rendered.flag("--read-timeout") == "10"
    assert rendered.flag("--max-connections") == "1000" and rendered.flag("--shutdown-grace") == "20"
    assert rendered.flag("--metrics-port") is None and rendered.flag("--client-ca") is None
    assert rendered.pod_spec["terminationGracePeriodSeconds"] == 30


def test_bounds_follow_the_values() -> None:
    rendered = Rendered({"server": {"maxImages": 64, "readTimeoutSeconds": 2.5, "maxConnections": 200,
                                    "shutdownGraceSeconds": 40}, "terminationGracePeriodSeconds": 45})
    assert (rendered.flag("--max-images"), rendered.flag("--read-timeout"), rendered.flag("--max-connections"),
            rendered.flag("--shutdown-grace")) == ("64", "2.5", "200", "40")


def probes(rendered: Rendered) -> list[Obj]:
    container = rendered.container
    return [container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")]


def test_with_a_metrics_port_probes_and_the_service_use_it() -> None:
    rendered = Rendered({"server": {"metricsPort": 9090}})
    assert rendered.flag("--metrics-port") == "9090"
    ports = {p["name"]: p["containerPort"] for p in rendered.container["ports"]}
    assert ports == {"https": 8443, "metrics": 9090}
    assert all(p["port"] == "metrics" and p["scheme"] == "HTTP" for p in probes(rendered))
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in rendered.one("Service")["spec"]["ports"]}
    assert service_ports == {"https": (443, "https"), "metrics": (9090, "metrics")}
    test_pod = next(o for o in rendered.of_kind("Pod") if o["metadata"]["name"].endswith("test-connection"))
    env = {e["name"]: e.get("value") for e in test_pod["spec"]["containers"][0]["env"]}
    assert env["SIGNET_URL"] == "http://signet.signet-system.svc:9090"


def test_without_a_metrics_port_probes_stay_on_https() -> None:
    rendered = Rendered()
    assert all(p["port"] == "https" and p["scheme"] == "HTTPS" for p in probes(rendered))
    assert [p["name"] for p in rendered.one("Service")["spec"]["ports"]] == ["https"]


def test_a_client_ca_is_stored_mounted_and_required() -> None:
    rendered = Rendered(CLIENT_CA_VALUES)
    (configmap,) = [o for o in rendered.of_kind("ConfigMap") if o["metadata"]["name"] == "signet-client-ca"]
    assert configmap["data"]["ca.crt"].strip() == CA_PEM.strip()
    assert rendered.flag("--client-ca") == "/etc/signet/client-ca/ca.crt"
    mounts = {m["name"]: m["mountPath"] for m in rendered.container["volumeMounts"]}
    assert mounts["client-ca"] == "/etc/signet/client-ca"
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "client-ca")
    assert volume["configMap"]["name"] == "signet-client-ca"


def test_a_new_client_ca_rolls_the_pods() -> None:
    other = {"server": {"metricsPort": 9090, "clientCA": {"pem": CA_PEM.replace("fake", "other")}}}

    def checksum(values: Obj) -> str:
        annotations: dict[str, str] = Rendered(values).deployment["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/client-ca"]

    assert checksum(CLIENT_CA_VALUES) != checksum(other)


def test_a_client_ca_from_an_existing_configmap() -> None:
    rendered = Rendered({"server": {"metricsPort": 9090, "clientCA": {"existingConfigMap": "apiserver-client-ca"}}})
    assert not [o for o in rendered.of_kind("ConfigMap") if o["metadata"]["name"] == "signet-client-ca"]
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "client-ca")
    assert volume["configMap"]["name"] == "apiserver-client-ca"
    assert rendered.flag("--client-ca") == "/etc/signet/client-ca/ca.crt"


@pytest.mark.parametrize(("values", "message"), [
    ({"server": {"clientCA": {"pem": CA_PEM}}}, r"server\.clientCA needs server\.metricsPort"),
    ({"server": {"metricsPort": 9090, "clientCA": {"pem": CA_PEM, "existingConfigMap": "x"}}},
     r"set pem or existingConfigMap, not both"),
    ({"server": {"shutdownGraceSeconds": 30}},
     r"server\.shutdownGraceSeconds \(30\) must be below terminationGracePeriodSeconds \(30\)"),
    ({"server": {"metricsPort": 8443}}, r"server\.metricsPort \(8443\) must differ from server\.port"),
    ({"server": {"metricsPort": 80}}, r"/server/metricsPort"),
    ({"server": {"maxConnections": 4}}, r"/server/maxConnections"),
    ({"server": {"maxImages": 0}}, r"/server/maxImages"),
    ({"server": {"readTimeoutSeconds": 0}}, r"/server/readTimeoutSeconds"),
])
def test_impossible_bounds_fail_the_render(values: Obj, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(values)


def test_readme_explains_the_admission_kubeconfig() -> None:
    from tests.unit.chart.rendering import CHART

    readme = (CHART / "README.md").read_text()
    for phrase in ("AdmissionConfiguration", "WebhookAdmissionConfiguration", "kubeConfigFile",
                   "<service>.<namespace>.svc", "client-certificate", "server.clientCA", "NetworkPolicy"):
        assert phrase in readme, phrase

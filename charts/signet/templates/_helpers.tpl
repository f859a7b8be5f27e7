{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "signet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources. */}}
{{- define "signet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "signet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "signet.labels" -}}
helm.sh/chart: {{ include "signet.chart" . }}
{{ include "signet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: signet
{{- end }}

{{/* Labels that select the webhook pods (immutable in the Deployment: never add to them). */}}
{{- define "signet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "signet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "signet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "signet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "signet.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- .Values.tls.secretName }}
{{- else }}
{{- default (printf "%s-tls" (include "signet.fullname" .)) .Values.tls.secretName }}
{{- end }}
{{- end }}

{{- define "signet.policiesConfigMapName" -}}
{{- printf "%s-policies" (include "signet.fullname" .) }}
{{- end }}

{{/* The ConfigMap holding the trust root file, or "" when the public TUF root is used. */}}
{{- define "signet.trustRootConfigMapName" -}}
{{- if eq .Values.trustRoot.source "trustedRoot" }}
{{- default (printf "%s-trust-root" (include "signet.fullname" .)) .Values.trustRoot.trustedRoot.existingConfigMap }}
{{- else if eq .Values.trustRoot.source "tufMirror" }}
{{- default (printf "%s-trust-root" (include "signet.fullname" .)) .Values.trustRoot.tufMirror.existingConfigMap }}
{{- end }}
{{- end }}

{{/* True ("true") when the chart itself creates the trust-root ConfigMap. */}}
{{- define "signet.ownsTrustRootConfigMap" -}}
{{- if and (eq .Values.trustRoot.source "trustedRoot") (not .Values.trustRoot.trustedRoot.existingConfigMap) }}true
{{- else if and (eq .Values.trustRoot.source "tufMirror") (not .Values.trustRoot.tufMirror.existingConfigMap) }}true
{{- end }}
{{- end }}

{{/* The ConfigMap holding the client CA (`ca.crt`), or "" when callers are not authenticated. */}}
{{- define "signet.clientCAConfigMapName" -}}
{{- if .Values.server.clientCA.existingConfigMap }}
{{- .Values.server.clientCA.existingConfigMap }}
{{- else if .Values.server.clientCA.pem }}
{{- printf "%s-client-ca" (include "signet.fullname" .) }}
{{- end }}
{{- end }}

{{/* DNS names the serving certificate must cover (the API server calls <svc>.<ns>.svc). */}}
{{- define "signet.dnsNames" -}}
{{- $svc := include "signet.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/*
TLS material for tls.mode=helm, as JSON {"crt", "key", "ca"} (PEM). Generated once per render and
cached in .Values, so the Secret, the webhook caBundle and the pod checksum all agree; on upgrade
the existing Secret (cert, key and CA) is looked up and reused, so the caBundle does not change
under running pods.
*/}}
{{- define "signet.helmTLS" -}}
{{- if not (hasKey .Values "__signetGeneratedTLS") }}
{{- $name := include "signet.tlsSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name }}
{{- $material := dict }}
{{- if and $existing $existing.data (hasKey $existing.data "tls.crt") (hasKey $existing.data "tls.key") (hasKey $existing.data "ca.crt") }}
{{- $material = dict "crt" (index $existing.data "tls.crt" | b64dec) "key" (index $existing.data "tls.key" | b64dec) "ca" (index $existing.data "ca.crt" | b64dec) }}
{{- else }}
{{- $days := int .Values.tls.helm.validityDays }}
{{- $ca := genCA (printf "%s-ca" (include "signet.fullname" .)) $days }}
{{- $svc := printf "%s.%s.svc" (include "signet.fullname" .) .Release.Namespace }}
{{- $cert := genSignedCert $svc nil (include "signet.dnsNames" . | fromJsonArray) $days $ca }}
{{- $material = dict "crt" $cert.Cert "key" $cert.Key "ca" $ca.Cert }}
{{- end }}
{{- $_ := set .Values "__signetGeneratedTLS" $material }}
{{- end }}
{{- index .Values "__signetGeneratedTLS" | toJson }}
{{- end }}

{{/* The webhook clientConfig.caBundle (base64 PEM), or "" in certManager mode (injected). */}}
{{- define "signet.caBundle" -}}
{{- if eq .Values.tls.mode "helm" }}
{{- (include "signet.helmTLS" . | fromJson).ca | b64enc }}
{{- else if eq .Values.tls.mode "secret" }}
{{- .Values.tls.caBundle }}
{{- end }}
{{- end }}

{{/* Changes whenever the serving certificate the chart knows about changes, to roll the pods. */}}
{{- define "signet.tlsChecksum" -}}
{{- if eq .Values.tls.mode "helm" }}
{{- (include "signet.helmTLS" . | fromJson).crt | sha256sum }}
{{- else if eq .Values.tls.mode "secret" }}
{{- printf "%s/%s" .Values.tls.secretName .Values.tls.caBundle | sha256sum }}
{{- else }}
{{- toJson .Values.tls.certManager | sha256sum }}
{{- end }}
{{- end }}

{{/* namespaceSelector shared by both webhooks. */}}
{{- define "signet.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq) | nindent 6 }}
  {{- if .Values.webhook.optIn }}
  - key: signet.dev/include
    operator: In
    values: ["true"]
  {{- else }}
  - key: signet.dev/exclude
    operator: NotIn
    values: ["true"]
  {{- end }}
  {{- with .Values.webhook.namespaceSelectorExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Resources the webhooks intercept (ARCHITECTURE.md §3). */}}
{{- define "signet.webhookRules" -}}
- apiGroups: [""]
  apiVersions: ["v1"]
  operations: ["CREATE", "UPDATE"]
  resources: ["pods", "replicationcontrollers", "podtemplates"]
  scope: Namespaced
- apiGroups: [""]
  apiVersions: ["v1"]
  operations: ["UPDATE"]
  resources: ["pods/ephemeralcontainers"]
  scope: Namespaced
- apiGroups: ["apps"]
  apiVersions: ["v1"]
  operations: ["CREATE", "UPDATE"]
  resources: ["deployments", "replicasets", "statefulsets", "daemonsets"]
  scope: Namespaced
- apiGroups: ["batch"]
  apiVersions: ["v1"]
  operations: ["CREATE", "UPDATE"]
  resources: ["jobs", "cronjobs"]
  scope: Namespaced
{{- end }}

{{/* Restricted-profile container security context, shared with the test pod. */}}
{{- define "signet.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "signet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Chart name, at most 63 characters (a DNS label). */}}
{{- define "sitg-bot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. 52 characters leave room for the suffixes
("-leader-election", "-crd") within the 63 characters of a DNS label.
*/}}
{{- define "sitg-bot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sitg-bot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of the operator pods. The component name "operator" keeps them apart
from the worker pods, which the operator labels app.kubernetes.io/name=sitg-bot and
app.kubernetes.io/instance=<fleet>: without it, a fleet named like the release would
select the operator pods.
*/}}
{{- define "sitg-bot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sitg-bot.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sitg-bot.labels" -}}
helm.sh/chart: {{ include "sitg-bot.chart" . }}
{{ include "sitg-bot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sitg-bot
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of objects that are not part of the operator (fleet, monitoring). */}}
{{- define "sitg-bot.commonLabels" -}}
helm.sh/chart: {{ include "sitg-bot.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sitg-bot
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels the operator puts on every worker pod and child object
(src/operator/build/mod.rs: labels()); monitors select on them.
*/}}
{{- define "sitg-bot.workerSelectorLabels" -}}
app.kubernetes.io/name: sitg-bot
app.kubernetes.io/component: worker
app.kubernetes.io/managed-by: sitg-bot-operator
{{- end }}

{{- define "sitg-bot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sitg-bot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sitg-bot.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The namespace the operator watches in "namespace" scope. */}}
{{- define "sitg-bot.watchNamespace" -}}
{{- default .Release.Namespace .Values.rbac.watchNamespace }}
{{- end }}

{{- define "sitg-bot.namespaced" -}}
{{- if eq .Values.rbac.scope "namespace" }}true{{ end }}
{{- end }}

{{- define "sitg-bot.leaseName" -}}
{{- default (include "sitg-bot.fullname" .) .Values.operator.leaderElection.leaseName }}
{{- end }}

{{/*
Namespace selector of the worker monitors: the watched namespace in "namespace" scope,
every namespace otherwise.
*/}}
{{- define "sitg-bot.workerNamespaceSelector" -}}
{{- if include "sitg-bot.namespaced" . -}}
matchNames:
  - {{ include "sitg-bot.watchNamespace" . }}
{{- else -}}
any: true
{{- end }}
{{- end }}

{{/*
What the reconcile reads and writes in the watched namespace(s); the table in
src/operator/mod.rs lists the same. No delete except on the autoscaler (removed when
a fleet turns autoscaling off); everything else goes away with its owner through the
garbage collector.
*/}}
{{- define "sitg-bot.reconcileRules" -}}
- apiGroups: ["sitg.io"]
  resources: ["botfleets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["sitg.io"]
  resources: ["botfleets/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Labels of the `helm test` Pod; the operator's NetworkPolicy admits it by them. */}}
{{- define "sitg-bot.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "sitg-bot.name" . }}-test
app.kubernetes.io/component: test
{{- end }}

{{/*
Namespaces of the worker NetworkPolicy: networkPolicy.workers.namespaces, else the
namespace of the chart's BotFleet (botFleet.namespace, the watched namespace in
"namespace" scope, or the release namespace).
*/}}
{{- define "sitg-bot.workerPolicyNamespaces" -}}
{{- if .Values.networkPolicy.workers.namespaces }}
{{- toJson .Values.networkPolicy.workers.namespaces }}
{{- else }}
{{- list (include "sitg-bot.fleetNamespace" .) | toJson }}
{{- end }}
{{- end }}

{{/* Namespace of the chart's BotFleet (templates/botfleet.yaml checks it is watched). */}}
{{- define "sitg-bot.fleetNamespace" -}}
{{- if include "sitg-bot.namespaced" . }}
{{- default (include "sitg-bot.watchNamespace" .) .Values.botFleet.namespace }}
{{- else }}
{{- default .Release.Namespace .Values.botFleet.namespace }}
{{- end }}
{{- end }}

{{/*
One egress rule from {to, ports}: TCP to the ports; `to` omitted when empty (any
destination).
*/}}
{{- define "sitg-bot.egressRule" -}}
{{- $ports := list }}
{{- range .ports }}
{{- $ports = append $ports (dict "protocol" "TCP" "port" .) }}
{{- end }}
{{- $rule := dict "ports" $ports }}
{{- with .to }}
{{- $_ := set $rule "to" . }}
{{- end }}
{{- list $rule | toYaml }}
{{- end }}

{{/* The egress rule to the cluster DNS: UDP and TCP on each port. */}}
{{- define "sitg-bot.dnsEgressRule" -}}
{{- $ports := list }}
{{- range .ports }}
{{- $ports = concat $ports (list (dict "protocol" "UDP" "port" .) (dict "protocol" "TCP" "port" .)) }}
{{- end }}
{{- $rule := dict "ports" $ports }}
{{- with .to }}
{{- $_ := set $rule "to" . }}
{{- end }}
{{- list $rule | toYaml }}
{{- end }}

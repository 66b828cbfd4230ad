{{/* Names, labels and derived values shared by the templates. */}}

{{- define "gregor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: <release>-gregor, or the release name when it holds the chart's. */}}
{{- define "gregor.fullname" -}}
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

{{/*
Selector labels. app.kubernetes.io/name is "gregor-operator", not "gregor": the operator watches
its own children by app.kubernetes.io/name=gregor, and its pods must not look like brokers.
*/}}
{{- define "gregor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gregor.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gregor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gregor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: gregor
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "gregor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gregor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gregor.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The ClusterRole broker pods of KafkaClusters with spec.rack are bound to (nodes get). */}}
{{- define "gregor.brokerRackRole" -}}
{{- printf "%s-broker-rack" (include "gregor.fullname" .) }}
{{- end }}

{{- define "gregor.leaseName" -}}
{{- default (include "gregor.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
What the operator does in the namespaces it watches, as RBAC rules: the same list for the
ClusterRole (every namespace) and for each Role (watchNamespaces).
*/}}
{{- define "gregor.rules" -}}
# The custom resources: watched, and patched (finalizers, the config-keys annotation).
- apiGroups: [gregor.dev]
  resources: [kafkaclusters, kafkatopics, kafkausers]
  verbs: [get, list, watch, patch]
- apiGroups: [gregor.dev]
  resources: [kafkaclusters/status, kafkatopics/status, kafkausers/status]
  verbs: [patch]
# Children carry owner references with blockOwnerDeletion, which needs update on the owner's
# finalizers subresource.
- apiGroups: [gregor.dev]
  resources: [kafkaclusters/finalizers, kafkatopics/finalizers, kafkausers/finalizers]
  verbs: [update]
# Children, server-side applied with one field manager (an apply that creates needs create),
# and deleted once the spec no longer builds them (a removed external listener's Services, a
# pool turned off); the garbage collector deletes the rest with the cluster.
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, delete]
# The CAs', the nodes' and the KafkaUsers' certificates and passwords: read (a user-supplied
# CA or password too), applied, watched (only those carrying the operator's labels), and
# annotated (force-renew removed once a renewal is done, a password's check recorded).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch]
# The broker pods' ServiceAccount of a KafkaCluster with spec.rack, deleted when rack is
# removed.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, list, watch, create, patch, delete]
# Pods: read for node state, deleted one at a time by rolling restarts.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, delete]
# Volume claims: grown in place when a pool's storage size increases.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch, patch]
# Events on KafkaClusters and KafkaTopics (the recorder writes events.k8s.io; core for older
# clients).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

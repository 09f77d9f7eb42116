{{/*
Helpers of the baq chart. Daemon flags are written in the workload templates
themselves, never here, so tests/deploy/helm_chart_test.py sees each flag
with the `if` that gates it.
*/}}

{{/* Chart name, overridable. */}}
{{- define "baq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" unless the release name already contains the chart name. */}}
{{- define "baq.fullname" -}}
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

{{- define "baq.coordinator.fullname" -}}
{{- printf "%s-coordinator" (include "baq.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "baq.worker.fullname" -}}
{{- printf "%s-worker" (include "baq.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "baq.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "baq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: baq
{{- end }}

{{/* Selector labels of one component: include "baq.selectorLabels" (list . "worker"). */}}
{{- define "baq.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "baq.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "baq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "baq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: include "baq.image" (list . .Values.worker.image). */}}
{{- define "baq.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* host:port workers and clients dial: the coordinator Service's DNS name. */}}
{{- define "baq.coordinator.address" -}}
{{- printf "%s.%s.svc:%d" (include "baq.coordinator.fullname" .) .Release.Namespace (int .Values.coordinator.grpcPort) }}
{{- end }}

{{/* The worker's --devices value: explicit list, else cuda:0..N-1 with GPUs, else cpu. */}}
{{- define "baq.worker.devices" -}}
{{- if .Values.worker.devices }}
{{- join "," .Values.worker.devices }}
{{- else if .Values.worker.gpu.enabled }}
{{- $devices := list }}
{{- range $i := until (int .Values.worker.gpu.count) }}
{{- $devices = append $devices (printf "cuda:%d" $i) }}
{{- end }}
{{- join "," $devices }}
{{- else }}
{{- "cpu" }}
{{- end }}
{{- end }}

{{/* The worker's --shutdown_grace: its pod grace less the preStop pause and 30 s to exit. */}}
{{- define "baq.worker.shutdownGraceSeconds" -}}
{{- $grace := sub (sub (int .Values.worker.terminationGracePeriodSeconds) (int .Values.worker.preStopSleepSeconds)) 30 }}
{{- if lt $grace 30 }}
{{- fail "worker.terminationGracePeriodSeconds must be at least preStopSleepSeconds + 60" }}
{{- end }}
{{- $grace }}
{{- end }}

{{/*
Probe action on the gRPC port: Kubernetes' native gRPC health probe
(grpc.health.v1, Kubernetes >= 1.24), or a TCP check when TLS is on, since
kubelet's gRPC probes speak plaintext only. Usage:
include "baq.grpcProbeAction" (list . .Values.worker.grpcPort)
*/}}
{{- define "baq.grpcProbeAction" -}}
{{- $root := index . 0 -}}
{{- if $root.Values.tls.enabled -}}
tcpSocket:
  port: grpc
{{- else -}}
grpc:
  port: {{ index . 1 }}
{{- end }}
{{- end }}

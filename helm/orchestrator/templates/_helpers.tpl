{{/* Object name prefix: the release name, plus "-orchestrator" unless it already says so. */}}
{{- define "orchestrator.fullname" -}}
{{- if contains "orchestrator" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-orchestrator" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component: include "orchestrator.selector" (list . "worker") */}}
{{- define "orchestrator.selector" -}}
app.kubernetes.io/name: orchestrator
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* All labels of one component's objects. */}}
{{- define "orchestrator.labels" -}}
{{ include "orchestrator.selector" . }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{/* The Redis address the coordinator uses, empty for none. */}}
{{- define "orchestrator.redisAddress" -}}
{{- if .Values.redis.enabled -}}
{{ include "orchestrator.fullname" . }}-redis:6379
{{- else -}}
{{ .Values.redis.externalAddress }}
{{- end -}}
{{- end -}}

{{/* The coordinator's tokens from the optional Secret: its own (every role) and the per-role ones whose keys are set. */}}
{{- define "orchestrator.tokenEnv" -}}
- name: ORCH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.token.secretName }}
      key: {{ .Values.token.key }}
      optional: true
{{- range $env, $key := dict "ORCH_WORKER_TOKEN" .Values.token.workerKey "ORCH_USER_TOKEN" .Values.token.userKey "ORCH_VIEWER_TOKEN" .Values.token.viewerKey }}
{{- if $key }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.token.secretName }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}
{{- end -}}

{{/* The token a worker presents (ORCH_TOKEN): the worker role's when token.workerKey is set, else the coordinator's. */}}
{{- define "orchestrator.workerTokenEnv" -}}
- name: ORCH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.token.secretName }}
      key: {{ .Values.token.workerKey | default .Values.token.key }}
      optional: true
{{- end -}}

{{/* Pod security context of the .NET images' non-root "app" user (uid/gid 1654). */}}
{{- define "orchestrator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1654
runAsGroup: 1654
fsGroup: 1654
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: read-only root; writes go to mounted volumes only. */}}
{{- define "orchestrator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* ORCH_LOG_FORMAT: simple or json (JSON lines for a log collector). */}}
{{- define "orchestrator.logFormatEnv" -}}
- name: ORCH_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- end -}}

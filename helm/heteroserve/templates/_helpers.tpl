{{/* Chart name, truncated: object names add suffixes such as "-worker-<pool>" (pool names <= 30). */}}
{{- define "heteroserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 24 | trimSuffix "-" -}}
{{- end -}}

{{- define "heteroserve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 24 | trimSuffix "-" -}}
{{- else if contains (include "heteroserve.name" .) .Release.Name -}}
{{- .Release.Name | trunc 24 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "heteroserve.name" .) | trunc 24 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of a worker pool's Deployment; the planner's actuator computes it as workerPrefix + pool. */}}
{{- define "heteroserve.workerPrefix" -}}
{{- printf "%s-worker-" (include "heteroserve.fullname" .) -}}
{{- end -}}

{{/* Ownership labels: the Kubernetes actuator refuses any object without part-of + instance (+ pool). */}}
{{- define "heteroserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "heteroserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: heteroserve
{{- end -}}

{{- define "heteroserve.labels" -}}
{{ include "heteroserve.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "heteroserve.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{- define "heteroserve.secretName" -}}
{{- default (printf "%s-auth" (include "heteroserve.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "heteroserve.redisSecretName" -}}
{{- if .Values.redis.enabled -}}
{{- default (printf "%s-redis" (include "heteroserve.fullname" .)) .Values.redis.auth.existingSecret -}}
{{- else -}}
{{- .Values.externalRedis.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "heteroserve.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s-redis:%d/0" (include "heteroserve.fullname" .) (int .Values.redis.port) -}}
{{- else -}}
{{- .Values.externalRedis.url -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by gateway, planner and workers: Redis and the cluster token. */}}
{{- define "heteroserve.commonEnv" -}}
- name: HETEROSERVE_REDIS_URL
  value: {{ include "heteroserve.redisUrl" . | quote }}
{{- $redisSecret := include "heteroserve.redisSecretName" . }}
{{- if $redisSecret }}
- name: HETEROSERVE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $redisSecret }}
      key: {{ ternary .Values.redis.auth.passwordKey .Values.externalRedis.passwordKey .Values.redis.enabled }}
{{- end }}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.enabled }}
- name: HETEROSERVE_REDIS_TLS
  value: "true"
{{- if .Values.externalRedis.tls.caSecret }}
- name: HETEROSERVE_REDIS_CA_FILE
  value: /etc/heteroserve/redis-ca/{{ .Values.externalRedis.tls.caKey }}
{{- end }}
{{- end }}
- name: HETEROSERVE_CLUSTER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "heteroserve.secretName" . }}
      key: cluster-token
- name: HETEROSERVE_LOG_FORMAT
  value: json
{{- end -}}

{{- define "heteroserve.redisCaVolume" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.enabled .Values.externalRedis.tls.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ .Values.externalRedis.tls.caSecret }}
{{- end }}
{{- end -}}

{{- define "heteroserve.redisCaMount" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.enabled .Values.externalRedis.tls.caSecret }}
- name: redis-ca
  mountPath: /etc/heteroserve/redis-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "heteroserve.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "heteroserve.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Prometheus scrape annotations, when no ServiceMonitor is used. Arg: dict "port" N "root" $ */}}
{{- define "heteroserve.scrapeAnnotations" -}}
{{- if .root.Values.metrics.scrapeAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{- /* Pods of this release by component, as NetworkPolicy peers. */}}
{{- define "heteroserve.peer" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/instance: {{ .root.Release.Name }}
      app.kubernetes.io/part-of: heteroserve
      app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- define "heteroserve.metricsRule" -}}
- ports:
    - {port: metrics, protocol: TCP}
  {{- with .Values.networkPolicy.metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

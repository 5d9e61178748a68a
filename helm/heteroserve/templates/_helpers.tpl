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

{{/*
Redis URL as the processes get it (`--redis-url=$(HETEROSERVE_REDIS_URL)`). The password is spliced in
by Kubernetes from HETEROSERVE_REDIS_PASSWORD (a Secret) when the container starts, so it never appears
in the pod spec; the CA file of an external TLS Redis rides along as redis-py's `ssl_ca_certs` argument.
*/}}
{{- define "heteroserve.redisUrl" -}}
{{- $auth := ":$(HETEROSERVE_REDIS_PASSWORD)@" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s%s-redis:%d/0" $auth (include "heteroserve.fullname" .) (int .Values.redis.port) -}}
{{- else -}}
{{- $url := .Values.externalRedis.url -}}
{{- if .Values.externalRedis.existingSecret -}}
{{- $url = regexReplaceAll "^(rediss?://)" $url (printf "${1}%s" $auth) -}}
{{- end -}}
{{- if and .Values.externalRedis.tls.enabled .Values.externalRedis.tls.caSecret -}}
{{- $url = printf "%s%sssl_ca_certs=/etc/heteroserve/redis-ca/%s" $url (ternary "&" "?" (contains "?" $url)) .Values.externalRedis.tls.caKey -}}
{{- end -}}
{{- $url -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by gateway, planner and workers: Redis and the cluster token. */}}
{{- define "heteroserve.commonEnv" -}}
{{- $redisSecret := include "heteroserve.redisSecretName" . }}
{{- if $redisSecret }}
- name: HETEROSERVE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $redisSecret }}
      key: {{ ternary .Values.redis.auth.passwordKey .Values.externalRedis.passwordKey .Values.redis.enabled }}
{{- end }}
- name: HETEROSERVE_REDIS_URL
  value: {{ include "heteroserve.redisUrl" . | quote }}
- name: HETEROSERVE_CLUSTER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "heteroserve.secretName" . }}
      key: cluster-token
# The root filesystem is read-only: caches (torch, tokenizers) go to the /tmp emptyDir.
- name: HOME
  value: /tmp
{{- end -}}

{{/* Model names served: every pool's model, once each, in pool order. */}}
{{- define "heteroserve.models" -}}
{{- $models := list -}}
{{- range .Values.workerPools -}}
{{- $models = append $models .model -}}
{{- end -}}
{{- $models | uniq | join "," -}}
{{- end -}}

{{/* Models volume (+ its generating init container) for gateway and worker pods. Arg: dict "root" $ "image" img */}}
{{- define "heteroserve.modelsVolume" -}}
- name: models
  {{- if .root.Values.models.volume }}
  {{- toYaml .root.Values.models.volume | nindent 2 }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end -}}

{{- define "heteroserve.modelsInit" -}}
{{- if and (not .root.Values.models.volume) .root.Values.models.generate.enabled }}
- name: generate-model
  image: {{ .image }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["heteroserve", "model", "create"]
  args: [{{ printf "%s/%s" .root.Values.models.mountPath .root.Values.models.generate.name | quote }}, "--preset={{ .root.Values.models.generate.preset }}"]
  securityContext:
    {{- include "heteroserve.containerSecurityContext" .root | nindent 4 }}
  volumeMounts:
    - {name: models, mountPath: {{ .root.Values.models.mountPath }}}
    - {name: tmp, mountPath: /tmp}
{{- end }}
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

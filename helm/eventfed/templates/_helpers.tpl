{{/*
Names
*/}}
{{- define "eventfed.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: the release name, plus the chart name unless the release name already holds it.
*/}}
{{- define "eventfed.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's objects: (dict "root" $ "component" "stream") */}}
{{- define "eventfed.componentName" -}}
{{- printf "%s-%s" (include "eventfed.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "eventfed.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels. Call with (dict "root" $ "component" "api"); component may be empty.
*/}}
{{- define "eventfed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventfed.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "eventfed.labels" -}}
helm.sh/chart: {{ include "eventfed.chart" .root }}
{{ include "eventfed.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: eventfed
{{- end -}}

{{/*
VIM helpers. Call with (dict "root" $ "vim" $vim).
*/}}
{{- define "eventfed.vimId" -}}
{{- printf "%s_%s" .vim.cloudOwner .vim.cloudRegionId -}}
{{- end -}}

{{/*
Shards. The VIMs are spread over listener.replicas listener shards and poller.replicas poller
shards by rendezvous (highest-random-weight) hashing: a VIM goes to the shard i whose
sha256("<vim id>/<i>") is largest. The assignment depends on the VIM's id and the shard count
only, so adding or removing a VIM moves no other VIM, and going from n to n+1 shards moves only
the VIMs the new shard wins (about 1/(n+1) of them). Equal-length hex digests compare as strings
in the order of their numbers, so no integer conversion is needed.
Call with (dict "root" $ "component" "listener"|"poller"); renders YAML {"<shard>": [vims index, ...]},
read back with fromYaml; a shard without VIMs is absent.
*/}}
{{- define "eventfed.shards" -}}
{{- $count := int (index .root.Values .component).replicas -}}
{{- $skip := ternary "poll" "listen" (eq .component "listener") -}}
{{- $shards := dict -}}
{{- range $i, $vim := .root.Values.vims -}}
{{- if ne (include "eventfed.vimMode" $vim) $skip -}}
{{- $shard := include "eventfed.shardOf" (dict "vimId" (include "eventfed.vimId" (dict "vim" $vim)) "count" $count) -}}
{{- $_ := set $shards $shard (append (get $shards $shard | default list) $i) -}}
{{- end -}}
{{- end -}}
{{- toYaml $shards -}}
{{- end -}}

{{/* The shard of one VIM id among count shards: (dict "vimId" "o_r" "count" 5). */}}
{{- define "eventfed.shardOf" -}}
{{- $vimId := .vimId -}}
{{- $best := 0 -}}
{{- $bestWeight := "" -}}
{{- range $shard := until (int .count) -}}
{{- $weight := sha256sum (printf "%s/%d" $vimId $shard) -}}
{{- if gt $weight $bestWeight -}}
{{- $best = $shard -}}
{{- $bestWeight = $weight -}}
{{- end -}}
{{- end -}}
{{- $best -}}
{{- end -}}

{{/* Name of a shard's Deployment and VIMs ConfigMap: (dict "root" $ "component" "listener" "shard" 0) */}}
{{- define "eventfed.shardName" -}}
{{- printf "%s-%d" (include "eventfed.componentName" . | trunc 56 | trimSuffix "-") (int .shard) -}}
{{- end -}}

{{/* Where a pod finds its VIMs file, and the Secret files its VIMs name: <dir>/<vim id>/<file>. */}}
{{- define "eventfed.vimsDir" -}}/etc/eventfed/vims{{- end -}}
{{- define "eventfed.vimSecretsDir" -}}/etc/eventfed/vim-secrets{{- end -}}

{{/* A VIM's mode: listen (the default), poll or both. */}}
{{- define "eventfed.vimMode" -}}
{{- .mode | default "listen" -}}
{{- end -}}

{{/* "true" when some VIM is polled (mode poll or both), else empty. */}}
{{- define "eventfed.anyPoller" -}}
{{- range .Values.vims -}}
{{- if ne (include "eventfed.vimMode" .) "listen" }}true{{ end -}}
{{- end -}}
{{- end -}}

{{/* "true" when some VIM is listened to (mode listen or both), else empty. */}}
{{- define "eventfed.anyListener" -}}
{{- range .Values.vims -}}
{{- if ne (include "eventfed.vimMode" .) "poll" }}true{{ end -}}
{{- end -}}
{{- end -}}

{{/*
Image
*/}}
{{- define "eventfed.image" -}}
{{- $registry := .Values.image.repositoryOverride | default .Values.global.repository | default "" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .Values.image.name $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.name $tag -}}
{{- end -}}
{{- end -}}

{{- define "eventfed.pullPolicy" -}}
{{- .Values.image.pullPolicy | default .Values.global.pullPolicy | default "IfNotPresent" -}}
{{- end -}}

{{/*
Resources of a component for the chosen flavor: (dict "root" $ "component" "listener")
*/}}
{{- define "eventfed.flavor" -}}
{{- .Values.flavor | default .Values.global.flavor | default "small" -}}
{{- end -}}

{{- define "eventfed.resources" -}}
{{- $flavor := include "eventfed.flavor" .root -}}
{{- $byFlavor := index .root.Values.resources $flavor -}}
{{- toYaml (index $byFlavor .component) -}}
{{- end -}}

{{/*
Kafka
*/}}
{{- define "eventfed.kafkaBootstrap" -}}
{{- if .Values.kafka.bootstrapServers -}}
{{- .Values.kafka.bootstrapServers -}}
{{- else -}}
{{- printf "%s-%s" (include "eventfed.onapRelease" .) .Values.global.kafkaBootstrap -}}
{{- end -}}
{{- end -}}

{{- define "eventfed.strimziCluster" -}}
{{- .Values.strimzi.cluster | default (printf "%s-strimzi" (include "eventfed.onapRelease" .)) -}}
{{- end -}}

{{/* ONAP's release, whose Strimzi cluster and bootstrap eventfed joins: not eventfed's own release,
     which an operator names freely (helm install onap-eventfed ...). */}}
{{- define "eventfed.onapRelease" -}}
{{- .Values.global.onapRelease | default "onap" -}}
{{- end -}}

{{/* ONAP names a component's KafkaUser "<component>-ku"; Strimzi uses it as the SCRAM user name. */}}
{{- define "eventfed.kafkaUserName" -}}
{{- printf "%s-ku" (include "eventfed.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "true" when the Kafka protocol authenticates with SASL, else empty. */}}
{{- define "eventfed.kafkaSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}

{{/* "true" when the Kafka connection uses TLS, else empty. */}}
{{- define "eventfed.kafkaTls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{- define "eventfed.kafkaSaslUsername" -}}
{{- if .Values.kafka.sasl.username -}}
{{- .Values.kafka.sasl.username -}}
{{- else if .Values.strimzi.enabled -}}
{{- include "eventfed.kafkaUserName" . -}}
{{- else -}}
{{- fail "kafka.sasl.username is required when kafka.securityProtocol is SASL_* and strimzi.enabled is false" -}}
{{- end -}}
{{- end -}}

{{- define "eventfed.kafkaPasswordSecretName" -}}
{{- if .Values.kafka.sasl.passwordSecret.name -}}
{{- .Values.kafka.sasl.passwordSecret.name -}}
{{- else if .Values.strimzi.enabled -}}
{{- include "eventfed.kafkaUserName" . -}}
{{- else -}}
{{- fail "kafka.sasl.passwordSecret.name is required when kafka.securityProtocol is SASL_* and strimzi.enabled is false" -}}
{{- end -}}
{{- end -}}

{{- define "eventfed.kafkaCaSecretName" -}}
{{- .Values.kafka.caSecret.name | default (printf "%s-cluster-ca-cert" (include "eventfed.strimziCluster" .)) -}}
{{- end -}}

{{- define "eventfed.kafkaCaDir" -}}/var/run/secrets/eventfed/kafka-ca{{- end -}}

{{/* "true" when the Kafka clients present a certificate (mutual TLS), else empty. */}}
{{- define "eventfed.kafkaClientCert" -}}
{{- if .Values.kafka.clientCertificate.enabled }}true{{ end -}}
{{- end -}}

{{/* The Secret with the client certificate: as named, else the Strimzi KafkaUser's. */}}
{{- define "eventfed.kafkaClientCertSecretName" -}}
{{- if .Values.kafka.clientCertificate.secretName -}}
{{- .Values.kafka.clientCertificate.secretName -}}
{{- else if .Values.strimzi.enabled -}}
{{- include "eventfed.kafkaUserName" . -}}
{{- else -}}
{{- fail "kafka.clientCertificate.secretName is required when kafka.clientCertificate.enabled is true and strimzi.enabled is false" -}}
{{- end -}}
{{- end -}}

{{- define "eventfed.kafkaClientCertDir" -}}/var/run/secrets/eventfed/kafka-user{{- end -}}

{{/*
RabbitMQ TLS of one VIM: its own rabbitTls, else listener.rabbitTls. (dict "root" $ "vim" $vim)
Rendered as YAML, read back with fromYaml.
*/}}
{{- define "eventfed.rabbitTls" -}}
{{- $tls := .vim.rabbitTls | default .root.Values.listener.rabbitTls | default (dict "enabled" false) -}}
{{- toYaml $tls -}}
{{- end -}}

{{/*
Every subscription's sink topic that is not one of the chart's own topics, each once.
Rendered as a YAML list so callers can `fromYamlArray` it.
*/}}
{{- define "eventfed.subscriptionTopics" -}}
{{- $own := list -}}
{{- range $role, $topic := .Values.kafka.topics -}}
{{- $own = append $own $topic.name -}}
{{- end -}}
{{- $topics := list -}}
{{- range .Values.subscriptions -}}
{{- if and (eq .sink.type "kafka") (not (has .sink.topic $own)) -}}
{{- $topics = append $topics .sink.topic -}}
{{- end -}}
{{- end -}}
{{- toYaml (uniq $topics) -}}
{{- end -}}

{{/*
Checks that the schema cannot express.
*/}}
{{- define "eventfed.validate" -}}
{{- if gt (int .Values.stream.replicas) (int .Values.kafka.partitions) -}}
{{- fail (printf "stream.replicas (%d) must not exceed kafka.partitions (%d): a worker without a partition sits idle" (int .Values.stream.replicas) (int .Values.kafka.partitions)) -}}
{{- end -}}
{{- $ids := dict -}}
{{- range $i, $vim := .Values.vims -}}
{{- $id := include "eventfed.vimId" (dict "root" $ "vim" $vim) -}}
{{- if not (regexMatch "^[A-Za-z0-9][A-Za-z0-9._-]*_[A-Za-z0-9._-]+$" $id) -}}
{{- fail (printf "vims[%d]: VIM id %q must look like <cloudOwner>_<cloudRegionId>" $i $id) -}}
{{- end -}}
{{- if hasKey $ids $id -}}
{{- fail (printf "vims[%d]: VIM %q is listed twice" $i $id) -}}
{{- end -}}
{{- $_ := set $ids $id true -}}
{{- end -}}
{{- $subs := dict -}}
{{- range $i, $sub := .Values.subscriptions -}}
{{- if hasKey $subs $sub.name -}}
{{- fail (printf "subscriptions[%d]: the name %q is used twice" $i $sub.name) -}}
{{- end -}}
{{- $_ := set $subs $sub.name true -}}
{{- end -}}
{{- if and .Values.strimzi.enabled (include "eventfed.kafkaSasl" .) (ne .Values.kafka.saslMechanism "SCRAM-SHA-512") -}}
{{- fail (printf "kafka.saslMechanism %s: a Strimzi KafkaUser authenticates with SCRAM-SHA-512 only" .Values.kafka.saslMechanism) -}}
{{- end -}}
{{- if include "eventfed.kafkaSasl" . -}}
{{- $_ := include "eventfed.kafkaSaslUsername" . -}}
{{- $_ := include "eventfed.kafkaPasswordSecretName" . -}}
{{- end -}}
{{- $cert := .Values.kafka.clientCertificate -}}
{{- if $cert.enabled -}}
{{- if not (include "eventfed.kafkaTls" .) -}}
{{- fail (printf "kafka.clientCertificate.enabled needs kafka.securityProtocol SSL or SASL_SSL, not %s" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and .Values.strimzi.enabled (include "eventfed.kafkaSasl" .) -}}
{{- fail "kafka.clientCertificate.enabled with strimzi.enabled: a Strimzi KafkaUser authenticates with SCRAM (SASL_*) or a TLS client certificate (SSL), not both; set kafka.securityProtocol to SSL" -}}
{{- end -}}
{{- $_ := include "eventfed.kafkaClientCertSecretName" . -}}
{{- end -}}
{{- range $i, $vim := .Values.vims -}}
{{- $tls := include "eventfed.rabbitTls" (dict "root" $ "vim" $vim) | fromYaml -}}
{{- if and $tls.enabled (ne (empty $tls.certificateKey) (empty $tls.keyKey)) -}}
{{- fail (printf "vims[%d]: rabbitTls.certificateKey and rabbitTls.keyKey go together: a client certificate needs its key" $i) -}}
{{- end -}}
{{- if and $tls.enabled (or $tls.certificateKey $tls.keyKey) (not $tls.secretName) -}}
{{- fail (printf "vims[%d]: rabbitTls.secretName is required for a client certificate" $i) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.api.auth.basic.user (not .Values.api.auth.basic.passwordSecret.name) -}}
{{- fail "api.auth.basic.passwordSecret.name is required when api.auth.basic.user is set" -}}
{{- end -}}
{{- end -}}

{{/*
Pod security: the "restricted" Pod Security Standard.
*/}}
{{- define "eventfed.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurity }}
{{- if not (kindIs "invalid" .runAsUser) }}
runAsUser: {{ .runAsUser }}
{{- end }}
{{- if not (kindIs "invalid" .runAsGroup) }}
runAsGroup: {{ .runAsGroup }}
{{- end }}
{{- if not (kindIs "invalid" .fsGroup) }}
fsGroup: {{ .fsGroup }}
{{- end }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "eventfed.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Pod spec fields shared by every Deployment: (dict "root" $)
*/}}
{{- define "eventfed.podCommon" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "eventfed.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- /* Service links would inject <SERVICE>_PORT variables; the chart's own services are named
       eventfed-*, so they would collide with EVENTFED_* settings such as EVENTFED_API_PORT. */}}
enableServiceLinks: false
securityContext:
  {{- include "eventfed.podSecurityContext" $root | nindent 2 }}
{{- with $root.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  {{- if kindIs "string" . }}
  - name: {{ . }}
  {{- else }}
  - {{ toYaml . | nindent 4 | trim }}
  {{- end }}
  {{- end }}
{{- end }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "eventfed.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "eventfed.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/*
Pod template annotations: the env ConfigMap's checksum, so a settings change rolls the pods
(environment variables are read once at start-up). The subscriptions ConfigMap is left out on
purpose: the stream worker reloads that file while it runs.
*/}}
{{- define "eventfed.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Probes: (dict "probe" .Values.x.liveness "path" "/healthz" "port" "metrics")
*/}}
{{- define "eventfed.probe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
initialDelaySeconds: {{ .probe.initialDelaySeconds | default 0 }}
periodSeconds: {{ .probe.periodSeconds | default 10 }}
timeoutSeconds: {{ .probe.timeoutSeconds | default 1 }}
failureThreshold: {{ .probe.failureThreshold | default 3 }}
{{- end -}}

{{- define "eventfed.probes" -}}
{{- if .liveness.enabled }}
livenessProbe:
  {{- include "eventfed.probe" (dict "probe" .liveness "path" "/healthz" "port" .port) | nindent 2 }}
{{- end }}
{{- if .readiness.enabled }}
readinessProbe:
  {{- include "eventfed.probe" (dict "probe" .readiness "path" "/readyz" "port" .port) | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Kafka settings every container needs beyond the env ConfigMap: the SASL password from its
Secret. (dict "root" $ "clientId" "...")
*/}}
{{- define "eventfed.kafkaEnv" -}}
- name: EVENTFED_KAFKA_CLIENT_ID
  value: {{ .clientId | quote }}
{{- if include "eventfed.kafkaSasl" .root }}
- name: EVENTFED_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "eventfed.kafkaPasswordSecretName" .root }}
      key: {{ .root.Values.kafka.sasl.passwordSecret.key }}
{{- end }}
{{- with .root.Values.kafka.clientCertificate }}
{{- if and .enabled .keyPasswordSecret.name }}
- name: EVENTFED_KAFKA_SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .keyPasswordSecret.name }}
      key: {{ .keyPasswordSecret.key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "eventfed.envFrom" -}}
- configMapRef:
    name: {{ include "eventfed.componentName" (dict "root" . "component" "config") }}
{{- end -}}

{{/* Volumes every pod has: /tmp (the root filesystem is read-only) and the Kafka CA. */}}
{{- define "eventfed.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if include "eventfed.kafkaTls" . }}
- name: kafka-ca
  secret:
    secretName: {{ include "eventfed.kafkaCaSecretName" . }}
    items:
      - key: {{ .Values.kafka.caSecret.key }}
        path: ca.crt
{{- end }}
{{- if include "eventfed.kafkaClientCert" . }}
- name: kafka-user
  secret:
    secretName: {{ include "eventfed.kafkaClientCertSecretName" . }}
    # Read by the pod's group (fsGroup) only: the key is a credential.
    defaultMode: 0440
    items:
      - key: {{ .Values.kafka.clientCertificate.certificateKey }}
        path: user.crt
      - key: {{ .Values.kafka.clientCertificate.keyKey }}
        path: user.key
{{- end }}
{{- end -}}

{{- define "eventfed.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "eventfed.kafkaTls" . }}
- name: kafka-ca
  mountPath: {{ include "eventfed.kafkaCaDir" . }}
  readOnly: true
{{- end }}
{{- if include "eventfed.kafkaClientCert" . }}
- name: kafka-user
  mountPath: {{ include "eventfed.kafkaClientCertDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/*
The Strimzi API to write KafkaTopic and KafkaUser in. Strimzi 0.4x (ONAP OOM's) serves only
kafka.strimzi.io/v1beta2, 0.49 serves v1beta2 and v1, 1.x only v1: take v1 when the cluster serves
it. `helm template` cannot ask a cluster, so strimzi.apiVersion (or --api-versions) decides there.
*/}}
{{- define "eventfed.strimziApiVersion" -}}
{{- if .Values.strimzi.apiVersion -}}
{{- .Values.strimzi.apiVersion -}}
{{- else if and (.Capabilities.APIVersions.Has "kafka.strimzi.io/v1/KafkaTopic") (.Capabilities.APIVersions.Has "kafka.strimzi.io/v1/KafkaUser") -}}
kafka.strimzi.io/v1
{{- else -}}
kafka.strimzi.io/v1beta2
{{- end -}}
{{- end -}}

{{/*
"true" when a Prometheus Operator kind can be rendered: (dict "root" $ "kind" "ServiceMonitor").
An object of a kind the cluster does not serve fails the whole install, so it is left out unless
metrics.prometheusOperator is "always" (helm template, or CRDs applied by the same pipeline).
*/}}
{{- define "eventfed.monitoringServed" -}}
{{- $mode := .root.Values.metrics.prometheusOperator | default "auto" -}}
{{- if eq $mode "always" -}}
true
{{- else if and (eq $mode "auto") (.root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind)) -}}
true
{{- end -}}
{{- end -}}

{{/* Subscription topics that get a KafkaTopic: all but those the Kafka cluster already has. */}}
{{- define "eventfed.subscriptionTopicsToCreate" -}}
{{- $existing := .Values.kafka.existingTopics | default list -}}
{{- $topics := list -}}
{{- range (include "eventfed.subscriptionTopics" . | fromYamlArray) -}}
{{- if not (has . $existing) -}}
{{- $topics = append $topics . -}}
{{- end -}}
{{- end -}}
{{- toYaml $topics -}}
{{- end -}}

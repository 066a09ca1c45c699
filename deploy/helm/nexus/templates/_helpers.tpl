{{/* Chart name, cut to the 63 characters a label value allows. */}}
{{- define "nexus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name of every object; the release name alone when it already
contains the chart name. */}}
{{- define "nexus.fullname" -}}
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

{{- define "nexus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the release's pods: the Service's selector. */}}
{{- define "nexus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nexus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nexus.labels" -}}
helm.sh/chart: {{ include "nexus.chart" . }}
{{ include "nexus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "nexus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nexus.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The chart's Secret: holds whichever of jwt-secret, db-password, redis-password no
existingSecret provides. */}}
{{- define "nexus.secretName" -}}
{{- include "nexus.fullname" . }}
{{- end }}

{{/* true when the chart's Secret has at least one key to hold. */}}
{{- define "nexus.secretNeeded" -}}
{{- if or (not .Values.secrets.existingSecret) (and .Values.postgresql.enabled (not .Values.postgresql.auth.existingSecret)) (and .Values.redis.enabled .Values.redis.auth.enabled (not .Values.redis.auth.existingSecret)) }}true{{- end }}
{{- end }}

{{/* config.yaml: .Values.config with the keys the chart owns laid over it (port,
shutdown timings, database and cache), so the pod spec and the config cannot disagree. */}}
{{- define "nexus.config" -}}
{{- $v := .Values }}
{{- $own := dict
  "app" (dict "port" (int $v.containerPort))
  "server" (dict
    "shutdown_delay" (printf "%ds" (int $v.shutdown.delaySeconds))
    "graceful_timeout" (printf "%ds" (int $v.shutdown.gracefulTimeoutSeconds))) }}
{{- if $v.postgresql.enabled }}
{{- $_ := set $own "database" (dict "type" "postgresql" "host" $v.postgresql.host
  "port" (int $v.postgresql.port) "name" $v.postgresql.auth.database
  "user" $v.postgresql.auth.username) }}
{{- else }}
{{- $_ := set $own "database" (dict "type" "sqlite" "path" "/data/nexus.db") }}
{{- end }}
{{- if $v.redis.enabled }}
{{- $_ := set $own "cache" (dict "type" "redis" "redis" (dict "host" $v.redis.host
  "port" (int $v.redis.port) "db" (int $v.redis.db))) }}
{{- else }}
{{- $_ := set $own "cache" (dict "type" "memory") }}
{{- end }}
{{- toYaml (mergeOverwrite (deepCopy $v.config) $own) }}
{{- end }}

{{/* Refuses value sets whose pods could not work together. */}}
{{- define "nexus.validate" -}}
{{- $many := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) .Values.canary.enabled }}
{{- if and (not .Values.postgresql.enabled) $many }}
{{- fail "postgresql.enabled=false means SQLite, one file per pod: set replicaCount=1, autoscaling.enabled=false, canary.enabled=false" }}
{{- end }}
{{- if and .Values.persistence.enabled (has "ReadWriteOnce" .Values.persistence.accessModes) $many }}
{{- fail "persistence with ReadWriteOnce attaches to one node: set replicaCount=1, autoscaling.enabled=false, canary.enabled=false" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled needs at least one entry in ingress.hosts" }}
{{- end }}
{{- end }}

{{/* The pod template of a track ("stable" or "canary"):
     include "nexus.pod" (dict "root" $ "track" "stable" "image" "repo:tag" "replicas" n) */}}
{{- define "nexus.pod" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
metadata:
  annotations:
    # A change of config or secrets rolls the pods: nexus reads both at start.
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "nexus.selectorLabels" $root | nindent 4 }}
    version: {{ .track }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "nexus.serviceAccountName" $root }}
  # nexus never calls the Kubernetes API.
  automountServiceAccountToken: false
  # Service variables (a Service named nexus-cache becomes NEXUS_CACHE_PORT=tcp://...)
  # would be read as nexus settings.
  enableServiceLinks: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  # server.shutdown_delay + server.graceful_timeout + a margin for the workers to exit.
  terminationGracePeriodSeconds: {{ add $v.shutdown.delaySeconds $v.shutdown.gracefulTimeoutSeconds $v.shutdown.marginSeconds }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "nexus.selectorLabels" $root | nindent 10 }}
          version: {{ .track }}
  containers:
    - name: nexus
      image: {{ .image | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: ["serve"]
      ports:
        - name: http
          containerPort: {{ $v.containerPort }}
          protocol: TCP
      env:
        - name: NEXUS_AUTH_JWT_SECRET_FILE
          value: /run/secrets/nexus/jwt-secret
        {{- if $v.postgresql.enabled }}
        - name: NEXUS_DATABASE_PASSWORD_FILE
          value: /run/secrets/nexus/db-password
        {{- end }}
        {{- if and $v.redis.enabled $v.redis.auth.enabled }}
        - name: NEXUS_CACHE_REDIS_PASSWORD_FILE
          value: /run/secrets/nexus/redis-password
        {{- end }}
        {{- with $v.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      startupProbe:
        {{- toYaml $v.startupProbe | nindent 8 }}
      livenessProbe:
        {{- toYaml $v.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml $v.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /app/config
          readOnly: true
        - name: secrets
          mountPath: /run/secrets/nexus
          readOnly: true
        - name: data
          mountPath: /data
        - name: logs
          mountPath: /logs
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "nexus.fullname" $root }}
    - name: secrets
      projected:
        defaultMode: 0440
        sources:
          - secret:
              name: {{ $v.secrets.existingSecret | default (include "nexus.secretName" $root) }}
              items:
                - key: jwt-secret
                  path: jwt-secret
          {{- if $v.postgresql.enabled }}
          - secret:
              {{- if $v.postgresql.auth.existingSecret }}
              name: {{ $v.postgresql.auth.existingSecret }}
              items:
                - key: {{ $v.postgresql.auth.existingSecretPasswordKey }}
                  path: db-password
              {{- else }}
              name: {{ include "nexus.secretName" $root }}
              items:
                - key: db-password
                  path: db-password
              {{- end }}
          {{- end }}
          {{- if and $v.redis.enabled $v.redis.auth.enabled }}
          - secret:
              {{- if $v.redis.auth.existingSecret }}
              name: {{ $v.redis.auth.existingSecret }}
              items:
                - key: {{ $v.redis.auth.existingSecretPasswordKey }}
                  path: redis-password
              {{- else }}
              name: {{ include "nexus.secretName" $root }}
              items:
                - key: redis-password
                  path: redis-password
              {{- end }}
          {{- end }}
    - name: data
      {{- if and $v.persistence.enabled (eq .track "stable") }}
      persistentVolumeClaim:
        claimName: {{ $v.persistence.existingClaim | default (include "nexus.fullname" $root) }}
      {{- else }}
      emptyDir:
        sizeLimit: 1Gi
      {{- end }}
    - name: logs
      emptyDir:
        sizeLimit: 1Gi
    - name: tmp
      emptyDir:
        sizeLimit: 256Mi
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

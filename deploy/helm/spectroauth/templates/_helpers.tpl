{{/* The chart's name. */}}
{{- define "spectroauth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, the name of every object. */}}
{{- define "spectroauth.fullname" -}}
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

{{- define "spectroauth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spectroauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spectroauth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "spectroauth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "spectroauth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spectroauth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spectroauth.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The port of a host:port listen address (argument: the address). */}}
{{- define "spectroauth.port" -}}
{{- $parts := splitList ":" . }}
{{- last $parts | int }}
{{- end }}

{{/* The HTTP port: config.server.listen's, which must listen beyond loopback. */}}
{{- define "spectroauth.httpPort" -}}
{{- $listen := (((.Values.config).server).listen) | default "0.0.0.0:7007" | toString }}
{{- if or (hasPrefix "127." $listen) (hasPrefix "localhost:" $listen) (hasPrefix "[::1]" $listen) }}
{{- fail (printf "config.server.listen: %s listens on loopback only; a pod must listen on 0.0.0.0:PORT" $listen) }}
{{- end }}
{{- include "spectroauth.port" $listen }}
{{- end }}

{{/* The metrics port, empty without config.server.metricsListen. */}}
{{- define "spectroauth.metricsPort" -}}
{{- with (((.Values.config).server).metricsListen) }}{{ include "spectroauth.port" (toString .) }}{{ end }}
{{- end }}

{{/* config.server.shutdownTimeout in whole seconds (daemon default 15s). */}}
{{- define "spectroauth.shutdownSeconds" -}}
{{- $t := (((.Values.config).server).shutdownTimeout) | default "15s" | toString }}
{{- if regexMatch "^[0-9]+s$" $t }}{{ trimSuffix "s" $t | int }}
{{- else if regexMatch "^[0-9]+m$" $t }}{{ mul (trimSuffix "m" $t | int) 60 }}
{{- else if regexMatch "^[0-9]+m[0-9]+s$" $t }}{{ $ms := regexSplit "m" (trimSuffix "s" $t) -1 }}{{ add (mul (index $ms 0 | int) 60) (index $ms 1 | int) }}
{{- else }}{{ fail (printf "config.server.shutdownTimeout: %s: the chart reads whole seconds and minutes only (30s, 2m, 1m30s)" $t) }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds: above the shutdown timeout, always. */}}
{{- define "spectroauth.gracePeriod" -}}
{{- $shutdown := include "spectroauth.shutdownSeconds" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}{{ add $shutdown 15 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds: %d must be above config.server.shutdownTimeout (%d s), or Kubernetes kills the daemon while it drains" (int .Values.terminationGracePeriodSeconds) $shutdown) }}
{{- else }}{{ int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* The data directory: config.storage.path, absolute. */}}
{{- define "spectroauth.dataPath" -}}
{{- $p := (((.Values.config).storage).path) | default "/var/lib/spectroauth" | toString }}
{{- if not (isAbs $p) }}{{ fail (printf "config.storage.path: %s must be absolute in a pod (the root file system is read-only)" $p) }}{{ end }}
{{- $p }}
{{- end }}

{{/* Refuses values the daemon could not run on safely. */}}
{{- define "spectroauth.validate" -}}
{{- $storage := (((.Values.config).storage).type) | default "file" }}
{{- if and (gt (int .Values.replicaCount) 1) (ne $storage "postgres") }}
{{- fail (printf "replicaCount: %d replicas need config.storage.type: postgres (it is %s): with file storage each replica would have its own keys and sessions" (int .Values.replicaCount) $storage) }}
{{- end }}
{{- if and (eq $storage "file") .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "persistence: a file-storage volume serves one replica" }}
{{- end }}
{{- range $name, $p := ((.Values.config).plugins) }}
{{- if not (regexMatch "^[0-9a-fA-F]{64}$|^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" (toString ($p.sha256 | default ""))) }}
{{- fail (printf "config.plugins.%s.sha256: required, the 64 hex characters of the binary's SHA-256 (SHA256SUMS of the release) or a ${VAR} reference" $name) }}
{{- end }}
{{- end }}
{{- if ((.Values.config).devProvider).enabled }}
{{- fail "config.devProvider.enabled: the development provider signs anyone in; it has no place in a cluster" }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ names */}}

{{- define "marelle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, short enough for the longest suffix added to it
("-worker-<pool>", "-migrate"): 63 characters is the limit of a label value.
*/}}
{{- define "marelle.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "marelle.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels; call with (dict "ctx" $ "component" "web"). */}}
{{- define "marelle.selectorLabels" -}}
app.kubernetes.io/name: {{ include "marelle.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Common labels; call with (dict "ctx" $ "component" "web"). */}}
{{- define "marelle.labels" -}}
helm.sh/chart: {{ include "marelle.chart" .ctx }}
{{ include "marelle.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: marelle
{{- end }}

{{/* ------------------------------------------------------------------ image */}}

{{- define "marelle.image" -}}
{{- $img := .Values.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag | toString) }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ secrets */}}

{{/* The release's own Secret: chart-managed credentials and extraSecretEnv. */}}
{{- define "marelle.secretName" -}}
{{- include "marelle.fullname" . }}
{{- end }}

{{/*
SECRET_KEY: the value given, else the one already in the release's Secret (so an upgrade
keeps sessions valid), else a new random key.
*/}}
{{- define "marelle.secretKey" -}}
{{- if .Values.secretKey }}
{{- .Values.secretKey }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "marelle.secretName" .) }}
{{- if and $existing $existing.data (hasKey $existing.data "SECRET_KEY") }}
{{- index $existing.data "SECRET_KEY" | b64dec }}
{{- else }}
{{- randAlphaNum 64 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Core credentials as "KEY: value" lines (plain text), empty ones left out. */}}
{{- define "marelle.coreSecretData" -}}
SECRET_KEY: {{ include "marelle.secretKey" . | b64enc | quote }}
{{- with .Values.database.url }}
DATABASE_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.redis.url }}
REDIS_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.email.password }}
EMAIL_HOST_PASSWORD: {{ . | b64enc | quote }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ environment */}}

{{/* Non-secret environment of every Marelle container. */}}
{{- define "marelle.env" -}}
- name: MARELLE_ENV
  value: production
- name: DEBUG
  value: "false"
- name: PLATFORM_DOMAIN
  value: {{ .Values.platformDomain | quote }}
- name: MEDIA_ROOT
  value: {{ .Values.media.root | quote }}
{{- with .Values.staticRoot }}
- name: STATIC_ROOT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.email.host }}
- name: EMAIL_HOST
  value: {{ . | quote }}
{{- end }}
- name: EMAIL_PORT
  value: {{ .Values.email.port | quote }}
{{- with .Values.email.user }}
- name: EMAIL_HOST_USER
  value: {{ . | quote }}
{{- end }}
- name: EMAIL_USE_TLS
  value: {{ .Values.email.useTls | quote }}
{{- with .Values.email.from }}
- name: DEFAULT_FROM_EMAIL
  value: {{ . | quote }}
{{- end }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: PYTHONUNBUFFERED
  value: "1"
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
# The root filesystem is read-only and the user has no home directory.
- name: HOME
  value: /tmp
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* envFrom of the long-running pods and the sync Job: every credential. */}}
{{- define "marelle.envFrom" -}}
{{- if .Values.existingSecret }}
- secretRef:
    name: {{ .Values.existingSecret }}
{{- end }}
- secretRef:
    name: {{ include "marelle.secretName" . }}
{{- range .Values.extraSecretEnvFrom }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------------ pods */}}

{{/* Pod-level fields shared by every pod (indent 6 or deeper by the caller). */}}
{{- define "marelle.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod metadata labels and annotations; call with (dict "ctx" $ "component" "web"). */}}
{{- define "marelle.podMetadata" -}}
labels:
  {{- include "marelle.labels" . | nindent 2 }}
  {{- with .ctx.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/secret: {{ include "marelle.secretChecksum" .ctx }}
  {{- with .ctx.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Changes whenever a credential given through the values changes: pods roll. */}}
{{- define "marelle.secretChecksum" -}}
{{- list .Values.secretKey .Values.database.url .Values.redis.url .Values.email.password .Values.extraSecretEnv .Values.existingSecret .Values.extraSecretEnvFrom | toJson | sha256sum }}
{{- end }}

{{/* Container-level fields shared by every container. */}}
{{- define "marelle.containerCommon" -}}
image: {{ include "marelle.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}

{{/* Scratch space: the root filesystem is read-only. */}}
{{- define "marelle.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "marelle.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "marelle.mediaClaimName" -}}
{{- default (printf "%s-media" (include "marelle.fullname" .)) .Values.media.persistence.existingClaim }}
{{- end }}

{{- define "marelle.mediaVolume" -}}
- name: media
{{- if .Values.media.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "marelle.mediaClaimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}

{{- define "marelle.mediaMount" -}}
- name: media
  mountPath: {{ .Values.media.root }}
{{- end }}

{{/* ------------------------------------------------------------------ communes */}}

{{/* File name of a communes.files key: <slug>.yaml unless it already has an extension. */}}
{{- define "marelle.communeFileName" -}}
{{- if or (hasSuffix ".yaml" .) (hasSuffix ".yml" .) }}{{ . }}{{ else }}{{ printf "%s.yaml" . }}{{ end }}
{{- end }}

{{- define "marelle.communesConfigMapName" -}}
{{- default (printf "%s-communes" (include "marelle.fullname" .)) .Values.communes.existingConfigMap }}
{{- end }}

{{- define "marelle.hasCommunes" -}}
{{- if or .Values.communes.existingConfigMap .Values.communes.files }}true{{ end }}
{{- end }}

{{/*
Communes' own domains as a JSON list: communes.customDomains plus, when
communes.domainsFromFiles, the `domains:` of every file in communes.files; sorted, unique,
without those the platform hosts already cover.
*/}}
{{- define "marelle.customDomains" -}}
{{- $domains := list }}
{{- range .Values.communes.customDomains }}
{{- $domains = append $domains (lower .) }}
{{- end }}
{{- if .Values.communes.domainsFromFiles }}
{{- range $key, $content := .Values.communes.files }}
{{- $doc := fromYaml $content }}
{{- if hasKey $doc "Error" }}
{{- fail (printf "communes.files.%s is not valid YAML: %s" $key (get $doc "Error")) }}
{{- end }}
{{- range (get $doc "domains" | default list) }}
{{- $domains = append $domains (lower (toString .)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $platform := lower .Values.platformDomain }}
{{- $own := list }}
{{- range ($domains | uniq | sortAlpha) }}
{{- /* <platformDomain> and <label>.<platformDomain> are already served by the platform hosts. */}}
{{- $covered := or (eq . $platform) (and (hasSuffix (printf ".%s" $platform) .) (not (contains "." (trimSuffix (printf ".%s" $platform) .)))) }}
{{- if not $covered }}
{{- $own = append $own . }}
{{- end }}
{{- end }}
{{- $own | toJson }}
{{- end }}

{{/*
Names of the secret environment variables the commune files refer to (`…_env: NAME`),
as a JSON list.
*/}}
{{- define "marelle.communeSecretEnvNames" -}}
{{- $names := list }}
{{- range $key, $content := .Values.communes.files }}
{{- range regexFindAll "[A-Za-z0-9_]*_env:[ \\t]*[\"']?[A-Z_][A-Z0-9_]*" $content -1 }}
{{- $names = append $names (regexReplaceAll "^.*_env:[ \\t]*[\"']?" . "") }}
{{- end }}
{{- end }}
{{- $names | uniq | sortAlpha | toJson }}
{{- end }}

{{/* ------------------------------------------------------------------ checks */}}

{{/* Refusals that the values schema cannot express. Included by secret.yaml. */}}
{{- define "marelle.validate" -}}
{{- $owner := dict }}
{{- range $pool, $w := .Values.workers }}
{{- if $w.enabled }}
{{- range $w.queues }}
{{- if hasKey $owner . }}
{{- fail (printf "queue %q is consumed by worker pools %q and %q: a queue belongs to exactly one pool" . (get $owner .) $pool) }}
{{- end }}
{{- $_ := set $owner . $pool }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.communes.requireSecretEnv (not .Values.existingSecret) (not .Values.extraSecretEnvFrom) }}
{{- $missing := list }}
{{- range (include "marelle.communeSecretEnvNames" . | fromJsonArray) }}
{{- if not (hasKey $.Values.extraSecretEnv .) }}
{{- $missing = append $missing . }}
{{- end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "the commune files name secret environment variables that extraSecretEnv does not provide: %s (or set existingSecret / extraSecretEnvFrom, or communes.requireSecretEnv=false)" (join ", " $missing)) }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.tls.enabled .Values.ingress.tls.certManager.enabled (not (or .Values.ingress.tls.certManager.clusterIssuer .Values.ingress.tls.certManager.issuer)) }}
{{- fail "ingress.tls.certManager.enabled needs ingress.tls.certManager.clusterIssuer or .issuer" }}
{{- end }}
{{- end }}

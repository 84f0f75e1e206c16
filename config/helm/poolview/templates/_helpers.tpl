{{/* The release's objects are called after the release ("poolview" for `helm install poolview`). */}}
{{- define "poolview.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "poolview.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "poolview.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "poolview.selectorLabels" -}}
app.kubernetes.io/name: {{ include "poolview.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "poolview.labels" -}}
{{ include "poolview.selectorLabels" . }}
app.kubernetes.io/component: edge-proxy
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "poolview.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "poolview.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "poolview.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The kubelet probes from the host network namespace, where a wildcard bind is reached on loopback. */}}
{{- define "poolview.probeHost" -}}
{{- if has .Values.bindAddress (list "0.0.0.0" "::") }}127.0.0.1{{ else }}{{ .Values.bindAddress }}{{ end }}
{{- end }}

{{/* poolview's flags; those at their poolview default are left out, as in config/daemonset.yaml. */}}
{{- define "poolview.args" -}}
{{- $v := .Values }}
{{- $mode := $v.servingCertificate.mode }}
{{- if not (has $mode (list "secret" "csr" "none")) }}
{{- fail (printf "servingCertificate.mode must be secret, csr or none, not %q" $mode) }}
{{- end }}
{{- if not (has $v.anonymousRequests (list "forward" "reject" "proxy-identity")) }}
{{- fail (printf "anonymousRequests must be forward, reject or proxy-identity, not %q" $v.anonymousRequests) }}
{{- end }}
{{- if and (eq $v.anonymousRequests "proxy-identity") (not (or (hasPrefix "127." $v.bindAddress) (has $v.bindAddress (list "::1" "localhost")))) }}
{{- fail "anonymousRequests=proxy-identity lends poolview's credentials: bindAddress must be a loopback address" }}
{{- end }}
- --bind-address={{ $v.bindAddress }}
- --port={{ $v.ports.proxy }}
{{- if ne $mode "none" }}
- --secure-port={{ $v.ports.secure }}
{{- end }}
- --health-port={{ $v.ports.health }}
{{- if eq $mode "secret" }}
- --tls-cert-file=/etc/poolview/tls/tls.crt
- --tls-private-key-file=/etc/poolview/tls/tls.key
{{- else if eq $mode "csr" }}
- --rotate-server-certificates=true
- --cert-dir={{ $v.servingCertificate.certDir }}
{{- end }}
{{- if ne $v.anonymousRequests "forward" }}
- --anonymous-requests={{ $v.anonymousRequests }}
{{- end }}
{{- if $v.featureGates }}
{{- $gates := list }}
{{- range $gate, $on := $v.featureGates }}
{{- $gates = append $gates (printf "%s=%t" $gate $on) }}
{{- end }}
- --feature-gates={{ join "," $gates }}
{{- end }}
{{- if ne $v.logLevel "info" }}
- --log-level={{ $v.logLevel }}
{{- end }}
{{- if ne $v.targeting.name "yurt-hub-cfg" }}
- --configmap-name={{ $v.targeting.name }}
{{- end }}
{{- if ne .Release.Namespace "kube-system" }}
- --configmap-namespace={{ .Release.Namespace }}
{{- end }}
{{- with $v.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "ztunnel.image" -}}
{{- if contains "/" .Values.image -}}
{{ .Values.image }}
{{- else -}}
{{ .Values.hub }}/{{ .Values.image }}:{{ .Values.tag }}
{{- end -}}
{{- end }}

{{/* The control plane's TLS gRPC address (xDS and CA). */}}
{{- define "ztunnel.controlPlane" -}}
https://control-plane{{ if .Values.revision }}-{{ .Values.revision }}{{ end }}.{{ .Release.Namespace }}.svc:15012
{{- end }}

{{- define "ztunnel.selectorLabels" -}}
app: ztunnel
{{- end }}

{{- define "ztunnel.labels" -}}
{{ include "ztunnel.selectorLabels" . }}
istio.io/rev: {{ .Values.revision | default "default" | quote }}
app.kubernetes.io/name: ztunnel
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mesh
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

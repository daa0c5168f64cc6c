{{/* The name of every namespaced object of the release: control-plane[-<revision>]. */}}
{{- define "control-plane.name" -}}
control-plane{{ if .Values.revision }}-{{ .Values.revision }}{{ end }}
{{- end }}

{{/* Cluster-scoped names carry the namespace too, so installs in two namespaces do not collide. */}}
{{- define "control-plane.clusterName" -}}
{{ include "control-plane.name" . }}-{{ .Release.Namespace }}
{{- end }}

{{- define "control-plane.image" -}}
{{- if contains "/" .Values.image -}}
{{ .Values.image }}
{{- else -}}
{{ .Values.hub }}/{{ .Values.image }}:{{ .Values.tag }}
{{- end -}}
{{- end }}

{{- define "control-plane.waypointImage" -}}
{{- if .Values.waypointImage -}}
{{ .Values.waypointImage }}
{{- else -}}
{{ .Values.hub }}/waypoint:{{ .Values.tag }}
{{- end -}}
{{- end }}

{{- define "control-plane.selectorLabels" -}}
app: control-plane
istio.io/rev: {{ .Values.revision | default "default" | quote }}
{{- end }}

{{- define "control-plane.labels" -}}
{{ include "control-plane.selectorLabels" . }}
app.kubernetes.io/name: control-plane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mesh
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

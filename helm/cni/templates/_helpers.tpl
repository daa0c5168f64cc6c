{{- define "cni.image" -}}
{{- if contains "/" .Values.image -}}
{{ .Values.image }}
{{- else -}}
{{ .Values.hub }}/{{ .Values.image }}:{{ .Values.tag }}
{{- end -}}
{{- end }}

{{/* Cluster-scoped names carry the namespace, so installs in two namespaces do not collide. */}}
{{- define "cni.clusterName" -}}
istio-cni-{{ .Release.Namespace }}
{{- end }}

{{- define "cni.selectorLabels" -}}
k8s-app: istio-cni-node
{{- end }}

{{- define "cni.labels" -}}
{{ include "cni.selectorLabels" . }}
istio.io/rev: {{ .Values.revision | default "default" | quote }}
app.kubernetes.io/name: istio-cni
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mesh
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

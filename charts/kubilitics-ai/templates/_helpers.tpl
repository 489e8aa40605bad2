{{- define "kubilitics-ai.name" -}}kubilitics-ai{{- end -}}
{{- define "kubilitics-ai.labels" -}}
app.kubernetes.io/name: kubilitics-ai
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "kubilitics-ai.selector" -}}
app.kubernetes.io/name: kubilitics-ai
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

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

{{/*
The operator's rules on namespaced objects: its own CRDs and Events, what the read-only tools read
and what approved steps change. A ClusterRole's rules (rbac.scope=cluster) or a Role's in
operator.watchNamespace (rbac.scope=namespaced).
*/}}
{{- define "kubilitics-ai.workloadRules" }}
  - apiGroups: [ai.kubilitics.io]
    resources: [airequests, aiplans]
    verbs: [get, list, watch]
  - apiGroups: [ai.kubilitics.io]
    resources: [aiplans]
    verbs: [create]
  - apiGroups: [ai.kubilitics.io]
    resources: [airequests/status, aiplans/status]
    verbs: [get, patch, update]
  - apiGroups: [events.k8s.io]
    resources: [events]
    verbs: [create, patch]
  - apiGroups: [""]
    resources: [pods, pods/log, services, configmaps, events]
    verbs: [get, list, watch]
  - apiGroups: [apps]
    resources: [deployments, statefulsets, daemonsets]
    verbs: [get, list, watch]
  # The diagnose tool (src/diagnose/fetch.rs) lists these too; ConfigMaps by name only.
  - apiGroups: [apps]
    resources: [replicasets]
    verbs: [list]
  - apiGroups: ["", batch, autoscaling, discovery.k8s.io]
    resources: [persistentvolumeclaims, jobs, horizontalpodautoscalers, endpointslices]
    verbs: [list]
  - apiGroups: [apps]
    resources: [deployments, statefulsets]
    verbs: [patch]
  - apiGroups: [""]
    resources: [pods]
    verbs: [delete]
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [create]
  # patch_resource / apply_manifest (planned with a dry run, run only after approval) on the
  # allowlisted kinds (src/tools/mutate.rs GENERIC_KINDS); never Secrets, RBAC or cluster-scoped kinds.
  - apiGroups: ["", apps, batch, autoscaling, networking.k8s.io]
    resources: [deployments, statefulsets, daemonsets, services, configmaps, pods, jobs, cronjobs, horizontalpodautoscalers, networkpolicies, persistentvolumeclaims]
    verbs: [get, patch, create]
{{- end }}

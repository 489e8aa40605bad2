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
  # Approval policies of a namespace: read them, report their Ready condition.
  - apiGroups: [ai.kubilitics.io]
    resources: [aiapprovalpolicies]
    verbs: [list, watch]
  - apiGroups: [ai.kubilitics.io]
    resources: [aiapprovalpolicies/status]
    verbs: [patch]
  - apiGroups: [events.k8s.io]
    resources: [events]
    verbs: [create]
  # What the read-only tools read (tests/chart.rs checks these are exactly the verbs they use).
  - apiGroups: [""]
    resources: [pods, services]
    verbs: [get, list]
  - apiGroups: [""]
    resources: [pods/log]
    verbs: [get]
  # ConfigMaps: describe gets one; diagnose lists their names (metadata only, never data).
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list]
  - apiGroups: [""]
    resources: [events]
    verbs: [list]
  - apiGroups: [apps]
    resources: [deployments, statefulsets]
    verbs: [get, list]
  - apiGroups: [apps]
    resources: [daemonsets]
    verbs: [get]
  # The diagnose tool (src/diagnose/fetch.rs) lists these too; ConfigMaps by name only.
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    verbs: [list]
  - apiGroups: [batch]
    resources: [jobs]
    verbs: [list]
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers]
    verbs: [list]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list]
  {{- if ne .Values.operator.executeAs "requester" }}
  # Approved steps and their dry runs (with operator.executeAs=requester they are the
  # requester's own impersonated calls, and the operator holds none of these verbs).
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
  # One rule per API group: RBAC grants every group × resource pair of a rule.
  - apiGroups: [""]
    resources: [services, configmaps, pods, persistentvolumeclaims]
    verbs: [get, patch, create]
  - apiGroups: [apps]
    resources: [deployments, statefulsets, daemonsets]
    verbs: [get, patch, create]
  - apiGroups: [batch]
    resources: [jobs, cronjobs]
    verbs: [get, patch, create]
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers]
    verbs: [get, patch, create]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, patch, create]
  # Rollback of a created object (an approved plan's step whose verification failed): delete it
  # again, with uid and resourceVersion preconditions. One rule per API group.
  - apiGroups: [""]
    resources: [services, configmaps, persistentvolumeclaims]
    verbs: [delete]
  - apiGroups: [apps]
    resources: [deployments, statefulsets, daemonsets]
    verbs: [delete]
  - apiGroups: [batch]
    resources: [jobs, cronjobs]
    verbs: [delete]
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers]
    verbs: [delete]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [delete]
  {{- end }}
  # Verification reads the new ReplicaSet of a Deployment rollout (its pods are the evidence).
  - apiGroups: [apps]
    resources: [replicasets]
    verbs: [get, list]
{{- end }}

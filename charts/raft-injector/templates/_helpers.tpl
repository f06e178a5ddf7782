{{/* Names are fixed: users' RoleBindings name the ClusterRole raft-injector-member, and
     one webhook per cluster is the design. */}}
{{- define "raft-injector.labels" -}}
app.kubernetes.io/name: raft-injector
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "raft-injector.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{ with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* The webhooks' namespace selector: opted-in namespaces, never kube-system or ours. */}}
{{- define "raft-injector.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: raft-injector.io/injection
      operator: In
      values: [enabled]
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: [kube-system, {{ .Release.Namespace }}]
    {{- with .Values.webhook.extraNamespaceSelectorExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{- define "raft-injector.objectSelector" -}}
objectSelector:
  matchLabels:
    raft-injector.io/raft: "true"
    {{- with .Values.webhook.extraObjectSelectorLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{- define "raft-injector.clientConfig" -}}
clientConfig:
  service:
    name: raft-injector
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
{{- end }}

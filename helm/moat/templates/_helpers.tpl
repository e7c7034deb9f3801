{{/* Names. Moat is installed once per cluster (its CRD and RuntimeClasses are cluster-wide),
so objects have fixed names; namespaced ones live in the release namespace. */}}
{{- define "moat.operatorName" -}}moat-operator{{- end -}}
{{- define "moat.agentName" -}}moat-agent{{- end -}}

{{- define "moat.labels" -}}
app.kubernetes.io/part-of: moat
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "moat.image" -}}
{{- $root := index . 0 -}}{{- $img := index . 1 -}}
{{- $tag := $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- if $root.Values.image.registry -}}
{{- printf "%s/%s:%s" $root.Values.image.registry $img.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "moat.pullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The agent's user name as the API server sees its service-account token. */}}
{{- define "moat.agentUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "moat.agentName" . }}
{{- end -}}

{{/* The operator's user name as the API server sees its service-account token. */}}
{{- define "moat.operatorUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "moat.operatorName" . }}
{{- end -}}

{{/* A list of strings as a CEL list literal: ['a', 'b']. Values are quoted with
single quotes; a quote or backslash in one is refused (no key or name holds them). */}}
{{- define "moat.celList" -}}
{{- $out := list -}}
{{- range . -}}
{{- if or (contains "'" .) (contains "\\" .) -}}{{ fail (printf "%q: a quote or backslash cannot be in a key or name" .) }}{{- end -}}
{{- $out = append $out (printf "'%s'" .) -}}
{{- end -}}
[{{ join ", " $out }}]
{{- end -}}

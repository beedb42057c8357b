{{- define "logwarden.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "logwarden.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "logwarden.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "logwarden.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Environment every logwarden container shares: addresses from values, secrets from the Secret. */}}
{{- define "logwarden.env" -}}
- name: LOGWARDEN_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap is required" .Values.kafka.bootstrap | quote }}
- name: LOGWARDEN_KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: LOGWARDEN_KAFKA_REPLICATION
  value: {{ .Values.kafka.replication | quote }}
- name: LOGWARDEN_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if .Values.kafka.saslUsername }}
- name: LOGWARDEN_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.saslMechanism | quote }}
- name: LOGWARDEN_KAFKA_SASL_USERNAME
  value: {{ .Values.kafka.saslUsername | quote }}
- name: LOGWARDEN_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.name }}, key: kafka-sasl-password}
{{- end }}
- name: CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.name }}, key: clickhouse-password}
- name: LOGWARDEN_CLICKHOUSE_URL
  value: {{ printf "%s://%s:$(CLICKHOUSE_PASSWORD)@%s:%v" (ternary "https" "http" .Values.clickhouse.secure) .Values.clickhouse.user (required "clickhouse.host is required" .Values.clickhouse.host) .Values.clickhouse.port | quote }}
- name: LOGWARDEN_CLICKHOUSE_DATABASE
  value: {{ .Values.clickhouse.database | quote }}
- name: LOGWARDEN_STREAM_APP_ID
  value: {{ .Values.appId | quote }}
- name: LOGWARDEN_WEB_TOKENS_FILE
  value: /secrets/api-tokens/api_tokens.json
{{- range $key := list "smtp" "slack" "twilio" }}
- name: LOGWARDEN_ALERTING_{{ upper $key }}
  valueFrom:
    secretKeyRef: {name: {{ $.Values.secrets.name }}, key: alerting-{{ $key }}, optional: true}
{{- end }}
{{- end -}}

{{- define "logwarden.tokenVolume" -}}
- name: api-tokens
  secret:
    secretName: {{ .Values.secrets.name }}
    optional: true
    items:
      - {key: api-tokens, path: api_tokens.json}
{{- end -}}

{{- define "logwarden.pod" -}}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext: {runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001}
{{- end -}}

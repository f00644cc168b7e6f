{{/* Names: <release> when it already says container-auditor, else <release>-container-auditor (63 max). */}}
{{- define "container-auditor.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Object names of the parts; 52 characters leave room for the suffixes Kubernetes adds to pods. */}}
{{- define "container-auditor.operatorName" -}}
{{- printf "%s-operator" (include "container-auditor.fullname" . | trunc 43 | trimSuffix "-") -}}
{{- end -}}
{{- define "container-auditor.agentName" -}}
{{- printf "%s-agent" (include "container-auditor.fullname" . | trunc 46 | trimSuffix "-") -}}
{{- end -}}
{{- define "container-auditor.operatorServiceAccount" -}}
{{- default (include "container-auditor.operatorName" .) .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- define "container-auditor.agentServiceAccount" -}}
{{- default (include "container-auditor.agentName" .) .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- define "container-auditor.tlsSecret" -}}
{{- default (printf "%s-tls" (include "container-auditor.operatorName" .)) .Values.tls.existingSecret -}}
{{- end -}}
{{- define "container-auditor.agentPriorityClass" -}}
{{- default (printf "%s-node" (include "container-auditor.fullname" .)) .Values.agent.priorityClass.name -}}
{{- end -}}
{{/* The lease the operator replicas elect a leader with, in the release namespace. */}}
{{- define "container-auditor.leaseName" -}}
{{- include "container-auditor.operatorName" . -}}
{{- end -}}

{{/* The DNS names agents reach the operator by: the certificate must hold the one in the agents' URL. */}}
{{- define "container-auditor.operatorHost" -}}
{{- printf "%s.%s.svc" (include "container-auditor.operatorName" .) .Release.Namespace -}}
{{- end -}}

{{- define "container-auditor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: container-auditor
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component (operator or agent): never change them, Deployments refuse it. */}}
{{- define "container-auditor.selectorLabels" -}}
app.kubernetes.io/name: {{ .context.Chart.Name }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "container-auditor.componentLabels" -}}
{{ include "container-auditor.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* <registry>/<repository>:<tag> or @<digest>. */}}
{{- define "container-auditor.image" -}}
{{- $root := .context -}}
{{- $repository := .image.repository -}}
{{- if $root.Values.image.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $root.Values.image.registry) $repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default $root.Chart.AppVersion $root.Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The runc wrapper's configuration file (runc-wrapper/README.md, "Configuration"). */}}
{{- define "container-auditor.wrapperConfig" -}}
# container-auditor's runc wrapper (chart values nodeSetup.*). Read on every runc call.
{{- with .Values.nodeSetup.runcPath }}
runc = {{ . }}
{{- end }}
handoff_dir = {{ .Values.agent.hostPaths.handoff }}
ack_timeout_ms = {{ int .Values.nodeSetup.ackTimeoutMilliseconds }}
{{- end -}}

{{/* containerd's runtime entry for the RuntimeClass handler, for the node's /etc/containerd/config.toml. */}}
{{- define "container-auditor.containerdSnippet" -}}
{{- $binary := printf "%s/container-auditor-runc" (trimSuffix "/" .Values.nodeSetup.hostBinDir) -}}
{{- $plugin := "\"io.containerd.grpc.v1.cri\".containerd" -}}
{{- if eq (int .Values.nodeSetup.containerdConfigVersion) 3 -}}
{{- $plugin = "\"io.containerd.cri.v1.runtime\".containerd" -}}
{{- end -}}
[plugins.{{ $plugin }}.runtimes.{{ .Values.runtimeClass.handler }}]
  runtime_type = "io.containerd.runc.v2"
[plugins.{{ $plugin }}.runtimes.{{ .Values.runtimeClass.handler }}.options]
  BinaryName = "{{ $binary }}"
{{- end -}}

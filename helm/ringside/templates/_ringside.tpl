{{- /*
Named templates that put the ringside sidecar into a pod. This chart uses them for its
own Deployment; other charts can use them too (docs/deploy.md, "Using the sidecar in
your own chart").

Every template takes one context:
  (dict "root" $ "values" <this chart's values>)
In this chart that is (dict "root" $ "values" .Values); in a chart that depends on this
one under the name "ringside" it is (dict "root" $ "values" .Values.ringside).
Nothing here reads .Chart, so the output is the same from either place.
*/ -}}

{{/* The base name of everything ringside renders: fullnameOverride, or
<release>-<nameOverride|ringside> (just <release> when it already contains the name). */}}
{{- define "ringside.fullname" -}}
{{- $v := .values -}}
{{- if $v.fullnameOverride -}}
{{- $v.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "ringside" $v.nameOverride -}}
{{- if contains $name .root.Release.Name -}}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ringside.configMapName" -}}
{{- printf "%s-config" (include "ringside.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/* "true" when the sidecar is a native one (init container with restartPolicy: Always),
else empty. */}}
{{- define "ringside.nativeSidecar" -}}
{{- $mode := .values.ringside.sidecar | default "auto" -}}
{{- if eq $mode "native" -}}
true
{{- else if eq $mode "auto" -}}
{{- if semverCompare ">=1.29-0" .root.Capabilities.KubeVersion.Version -}}true{{- end -}}
{{- else if ne $mode "classic" -}}
{{- fail (printf "ringside.sidecar must be auto, native or classic, not %q" $mode) -}}
{{- end -}}
{{- end -}}

{{/* A ringside duration ("0", "250ms", "25s", "1.5m", "1h") in whole seconds, rounded
up. Takes (list <duration> <what it is, for the error message>). */}}
{{- define "ringside.durationSeconds" -}}
{{- $s := toString (index . 0) -}}
{{- if eq $s "0" -}}
0
{{- else -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s -}}
{{- $unit := trimPrefix $num $s -}}
{{- $scale := dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- if or (not $num) (not (hasKey $scale $unit)) -}}
{{- fail (printf "%s: cannot compute seconds from %q; give terminationGracePeriodSeconds explicitly" (index . 1) $s) -}}
{{- end -}}
{{- mulf (float64 $num) (get $scale $unit) | ceil | int -}}
{{- end -}}
{{- end -}}

{{/* Seconds ringside spends draining after SIGTERM (timeouts.drain, default 25s); empty
when the drain comes from an environment variable (${NAME}). */}}
{{- define "ringside.drainSeconds" -}}
{{- $timeouts := .values.ringside.config.timeouts | default dict -}}
{{- $drain := ternary (toString $timeouts.drain) "25s" (hasKey $timeouts "drain") -}}
{{- if not (contains "${" $drain) -}}
{{- include "ringside.durationSeconds" (list $drain "ringside.config.timeouts.drain") -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds for the pod: given, or delay + drain + margin. A
given value too short for delay + drain fails the render. */}}
{{- define "ringside.terminationGracePeriodSeconds" -}}
{{- $delay := int .values.ringside.preStopDelaySeconds -}}
{{- $drainText := include "ringside.drainSeconds" . -}}
{{- $given := .values.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $given -}}
{{- if not $drainText -}}
{{- fail "ringside.config.timeouts.drain comes from the environment: set terminationGracePeriodSeconds explicitly" -}}
{{- end -}}
{{- add $delay (int $drainText) (int .values.ringside.graceMarginSeconds) -}}
{{- else if and $drainText (lt (int $given) (add $delay (int $drainText))) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) is shorter than ringside.preStopDelaySeconds + timeouts.drain (%d): pods would be killed mid-drain" (int $given) (add $delay (int $drainText))) -}}
{{- else -}}
{{- int $given -}}
{{- end -}}
{{- end -}}

{{/* The port number at the end of a "host:port" listen address. Takes
(list <port override or nil> <address> <values path>). */}}
{{- define "ringside.port" -}}
{{- $override := index . 0 -}}
{{- if not (kindIs "invalid" $override) -}}
{{- int $override -}}
{{- else -}}
{{- $port := regexFind ":[0-9]+$" (toString (index . 1)) | trimPrefix ":" -}}
{{- if not $port -}}
{{- fail (printf "%s: no port number in %q; set ringside.ports explicitly" (index . 2) (toString (index . 1))) -}}
{{- end -}}
{{- $port -}}
{{- end -}}
{{- end -}}

{{- define "ringside.httpPort" -}}
{{- $cfg := .values.ringside.config -}}
{{- include "ringside.port" (list .values.ringside.ports.http ($cfg.listen | default "0.0.0.0:8080") "ringside.config.listen") -}}
{{- end -}}

{{- define "ringside.metricsPort" -}}
{{- $metrics := .values.ringside.config.metrics | default dict -}}
{{- include "ringside.port" (list .values.ringside.ports.metrics ($metrics.listen | default "0.0.0.0:9090") "ringside.config.metrics.listen") -}}
{{- end -}}

{{/* ringside.yaml: ringside.config as given, with upstream.address defaulting to the
backend container's port on loopback. */}}
{{- define "ringside.config" -}}
{{- $cfg := deepCopy (.values.ringside.config | default dict) -}}
{{- $upstream := get $cfg "upstream" | default dict -}}
{{- if not (hasKey $upstream "address") -}}
{{- $_ := set $upstream "address" (printf "127.0.0.1:%d" (int .values.backend.port)) -}}
{{- end -}}
{{- $_ := set $cfg "upstream" $upstream -}}
# ringside.yaml, rendered from the chart values ringside.config.
{{- /* Sections in the order of examples/ringside.yaml; keys this list does not know yet
(sections added by later ringside versions) follow in alphabetical order. */}}
{{- $order := list "listen" "workers" "io_backend" "upstream" "metrics" "control" "cache" "redis" "limits" "timeouts" "log" "routes" }}
{{- range $key := $order }}
{{- if hasKey $cfg $key }}
{{ toYaml (dict $key (get $cfg $key)) }}
{{- end }}
{{- end }}
{{- range $key := keys $cfg | sortAlpha }}
{{- if not (has $key $order) }}
{{ toYaml (dict $key (get $cfg $key)) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The ConfigMap holding ringside.yaml. */}}
{{- define "ringside.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "ringside.configMapName" . }}
  labels:
    app.kubernetes.io/name: {{ default "ringside" .values.nameOverride | trunc 63 | trimSuffix "-" }}
    app.kubernetes.io/instance: {{ .root.Release.Name }}
    app.kubernetes.io/component: proxy-config
    app.kubernetes.io/managed-by: {{ .root.Release.Service }}
data:
  ringside.yaml: |
    {{- include "ringside.config" . | nindent 4 }}
{{- end -}}

{{/* Pod annotations that roll the pods when ringside.yaml changes. */}}
{{- define "ringside.podAnnotations" -}}
checksum/ringside-config: {{ include "ringside.config" . | sha256sum }}
{{- end -}}

{{/* The volume holding ringside.yaml, as a list item for spec.volumes. */}}
{{- define "ringside.volume" -}}
- name: ringside-config
  configMap:
    name: {{ include "ringside.configMapName" . }}
{{- end -}}

{{/* The sidecar, as a list item: put it under initContainers when ringside.nativeSidecar
is "true", else under containers. */}}
{{- define "ringside.container" -}}
{{- $r := .values.ringside -}}
{{- $native := include "ringside.nativeSidecar" . -}}
- name: ringside
  image: "{{ $r.image.repository }}:{{ $r.image.tag }}"
  imagePullPolicy: {{ $r.image.pullPolicy }}
  {{- if $native }}
  restartPolicy: Always
  {{- end }}
  args:
    - --config
    - /etc/ringside/ringside.yaml
    {{- with $r.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $r.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $r.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: http
      containerPort: {{ include "ringside.httpPort" . }}
      protocol: TCP
    - name: metrics
      containerPort: {{ include "ringside.metricsPort" . }}
      protocol: TCP
  {{- /* /healthz, not /readyz: a native sidecar's startup probe must pass before the
  backend starts, and /readyz needs the backend. */}}
  startupProbe:
    httpGet:
      path: /healthz
      port: metrics
    {{- with $r.probes.startup }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: metrics
    {{- with $r.probes.readiness }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: metrics
    {{- with $r.probes.liveness }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if and (not $native) (gt (int $r.preStopDelaySeconds) 0) }}
  {{- /* Classic sidecar: SIGTERM reaches both containers together, so ringside waits
  here for the endpoint removal to spread before it stops accepting. */}}
  lifecycle:
    preStop:
      exec:
        command: ["/bin/sleep", "{{ int $r.preStopDelaySeconds }}"]
  {{- end }}
  {{- with $r.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $sc := deepCopy ($r.securityContext | default dict) }}
  {{- with $r.seccompProfile }}
  {{- $_ := set $sc "seccompProfile" . }}
  {{- end }}
  {{- with $sc }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: ringside-config
      mountPath: /etc/ringside
      readOnly: true
    {{- with $r.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* lifecycle for the backend container: keeps it serving while the pod leaves the
endpoints (native sidecar), or until ringside has drained (classic sidecar). */}}
{{- define "ringside.backendLifecycle" -}}
{{- $b := .values.backend -}}
{{- if $b.lifecycle -}}
{{- toYaml $b.lifecycle -}}
{{- else if ne ($b.preStop | default "auto") "none" -}}
{{- $delay := int .values.ringside.preStopDelaySeconds -}}
{{- $seconds := $delay -}}
{{- if not (include "ringside.nativeSidecar" .) -}}
{{- /* Outlive ringside's drain; with the drain unknown here, the whole grace period
less the margin. */}}
{{- $drainText := include "ringside.drainSeconds" . -}}
{{- if $drainText -}}
{{- $seconds = add $delay (int $drainText) -}}
{{- else -}}
{{- $seconds = sub (include "ringside.terminationGracePeriodSeconds" . | int) (int .values.ringside.graceMarginSeconds) -}}
{{- end -}}
{{- end -}}
{{- $mode := $b.preStop | default "auto" -}}
{{- if eq $mode "auto" -}}
{{- $mode = ternary "sleep" "exec" (semverCompare ">=1.30-0" .root.Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- if gt (int $seconds) 0 -}}
preStop:
{{- if eq $mode "sleep" }}
  sleep:
    seconds: {{ $seconds }}
{{- else if eq $mode "exec" }}
  exec:
    command: ["/bin/sleep", "{{ $seconds }}"]
{{- else }}
{{- fail (printf "backend.preStop must be auto, sleep, exec or none, not %q" $mode) }}
{{- end }}
{{- end -}}
{{- end -}}
{{- end -}}

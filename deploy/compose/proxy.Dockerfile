# The quick start's proxy: Caddy, plus the consul-template binary from HashiCorp's image, which
# renders Caddy's upstreams from Consul and runs Caddy (deploy/compose/consul-template.hcl).
ARG CADDY_IMAGE=caddy:2.10.2-alpine
ARG CONSUL_TEMPLATE_IMAGE=hashicorp/consul-template:0.41.1
FROM ${CONSUL_TEMPLATE_IMAGE} AS consul-template
FROM ${CADDY_IMAGE}
COPY --from=consul-template /bin/consul-template /usr/local/bin/consul-template
ENTRYPOINT ["consul-template", "-config", "/etc/consul-template/config.hcl"]

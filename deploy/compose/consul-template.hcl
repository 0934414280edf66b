# consul-template in the quick start's proxy: renders Caddy's upstreams from the `web` instances
# in Consul on loopback (the proxy uses the host network), then runs Caddy as its child.

# consul-template stops on SIGINT by default and passes other signals on to Caddy; `docker stop`
# sends SIGTERM, which then stops consul-template, and consul-template stops Caddy.
kill_signal = "SIGTERM"

consul {
  address = "127.0.0.1:8500"
}

template {
  source      = "/etc/caddy/Caddyfile.ctmpl"
  destination = "/etc/caddy/Caddyfile"
}

exec {
  command = ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile", "--watch"]
  # Caddy reloads the rendered file itself (--watch), gracefully. Without a reload signal
  # consul-template would restart Caddy on every change; Caddy ignores SIGHUP.
  reload_signal = "SIGHUP"
}

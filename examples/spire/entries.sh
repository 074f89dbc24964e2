#!/bin/sh
# Registration entries for Mandate, an enforcement point and two agents, on
# the node whose agent was attested with a join token:
#
#   spire-server token generate -spiffeID spiffe://acme.org/node/pdp-1
#   spire-agent run -config agent.conf -joinToken <token>
#
# Each workload runs as its own Unix user; the `unix:uid` selector is what
# the agent's workload attestor matches on the Workload API socket.
set -eu

NODE=spiffe://acme.org/node/pdp-1

# Mandate itself. `-federatesWith` makes the agent hand Mandate the
# partner's bundle too, so partner agents can be verified; Mandate trusts
# them only if `partner.example` is in its `identity.trusted_trust_domains`.
spire-server entry create \
    -parentID "$NODE" \
    -spiffeID spiffe://acme.org/mandate \
    -selector unix:uid:1100 \
    -x509SVIDTTL 3600 \
    -federatesWith spiffe://partner.example

# The enforcement point (Envoy's ext_authz client). Mandate lets it ask on
# behalf of subjects when the catalog puts it in `enforcement-points`.
spire-server entry create \
    -parentID "$NODE" \
    -spiffeID spiffe://acme.org/workloads/envoy \
    -selector unix:uid:1101 \
    -federatesWith spiffe://partner.example

# Two AI agents. Their paths start with `/agents/`, so Mandate treats them
# as agents (`identity.agent_path_prefixes`).
spire-server entry create \
    -parentID "$NODE" \
    -spiffeID spiffe://acme.org/agents/planner \
    -selector unix:uid:1201

spire-server entry create \
    -parentID "$NODE" \
    -spiffeID spiffe://acme.org/agents/patcher \
    -selector unix:uid:1202

# Federation is set up once per pair of servers: each side loads the other's
# bundle before the first refresh from its bundle endpoint.
#   spire-server bundle show -format spiffe > acme.org.bundle         (give to the partner)
#   spire-server bundle set -format spiffe -id spiffe://partner.example -path partner.bundle

# One policy per client: a token with it reaches only that client's secrets.
# Rendered by blocks.stores.vault.client_policy(); {{mount}} and {{client}} are substituted.
path "{{mount}}/data/clients/{{client}}/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "{{mount}}/metadata/clients/{{client}}/*" {
  capabilities = ["read", "delete", "list"]
}
path "{{mount}}/metadata/clients/{{client}}" {
  capabilities = ["list"]
}
# the agency's OAuth app registrations: a run refreshes the client's tokens with the app's secret
path "{{mount}}/data/platform/oauth/agency/app/*" {
  capabilities = ["read"]
}

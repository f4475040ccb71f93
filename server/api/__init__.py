"""The REST API: one Quart blueprint per resource (`blueprints.BLUEPRINTS`), every route declared
with `route.route`; the structs of each resource live beside its logic (`kefu.server.queues`, …)."""

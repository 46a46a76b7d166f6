"""
Notifications: the events of Distribution's C{notifications} section
(pushes, pulls, mounts and deletes), kept in a durable outbox and delivered
to each endpoint's sink (a webhook, or a third party's plugin).
"""

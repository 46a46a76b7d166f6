"""
Access control: what each request needs (L{txregistry.auth.access}), the
controllers that decide (C{htpasswd}, C{token}, C{silly}), found as Twisted
plugins providing L{txregistry.interfaces.IAccessControllerFactory}.
"""

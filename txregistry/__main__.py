"""C{python -m txregistry}: the same as the C{txregistry} command."""

from txregistry.commands import main

raise SystemExit(main())

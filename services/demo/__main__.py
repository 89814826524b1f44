"""``python -m services.demo``: run the demo services (see :mod:`services.demo.servers`)."""

from services.demo.servers import main

main()

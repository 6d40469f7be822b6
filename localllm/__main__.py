"""python -m localllm"""

from localllm.cli.main import main

raise SystemExit(main())

"""python -m localllm"""

from localllm.cli import main

raise SystemExit(main())

from carbonwrap.cli import main

main()

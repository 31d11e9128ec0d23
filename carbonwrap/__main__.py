from carbonwrap.entry import main

main()

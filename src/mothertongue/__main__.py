from mothertongue.cli import main

main()

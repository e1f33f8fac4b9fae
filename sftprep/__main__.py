from sftprep.cli import main

main()

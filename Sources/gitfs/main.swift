import GitfsCommands

Gitfs.runMain()

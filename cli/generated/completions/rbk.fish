# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_rbk_global_optspecs
    string join \n config= data-dir= provider= mirror= json q/quiet index-wait= h/help V/version
end

function __fish_rbk_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_rbk_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_rbk_using_subcommand
    set -l cmd (__fish_rbk_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c rbk -n "__fish_rbk_needs_command" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_needs_command" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_needs_command" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_needs_command" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_needs_command" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_needs_command" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_needs_command" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_needs_command" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_needs_command" -s V -l version -d 'Print version'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "backup" -d 'Back up a module; with --action, any backup operation (Rama-style)'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "list" -d 'List a module\'s backups, newest first'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "info" -d 'Show what a backup holds'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "restore" -d 'Restore a backup into the data dir'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "delete" -d 'Delete one backup; its chunks are freed by the next gc'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "gc" -d 'Delete backups by retention policy, then free packs no retained backup needs'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "verify" -d 'Check that backups are restorable without restoring them'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "mirror" -d 'Keep the store\'s mirror up to date (`sync`) or see how far behind it is (`status`)'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "repair-index" -d 'Rebuild the local chunk index from the store\'s pack trailers'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "stats" -d 'How much the store saves, and where: logical, unique and stored bytes, dedup and compression ratios, by module and kind of file; the store\'s garbage'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "bench" -d 'Measurements that need no store: `rbk bench dedup DIR...` predicts what rbk would store for successive generations, for several chunk sizes'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "serve" -d 'Run the modules of the data dir (those with a built-in `rbk.definition`), answer `rbk backup`/`rbk restore` on a control socket, and take periodic backups and GC as their dynamic options say'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "testdata" -d 'Generate or advance realistic module state (real RocksDB PStates)'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "demo" -d 'Generate a module, back it up over several generations, restore and check every backup, and print dedup ratio and throughput'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "config" -d 'Print the effective configuration and where each value came from'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "completions" -d 'Print a shell completion script (e.g. `rbk completions bash > /etc/bash_completion.d/rbk`)'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "man" -d 'Print the man page (roff), e.g. `rbk man > /usr/local/share/man/man1/rbk.1`; with --out-dir, write it and one page per subcommand (rbk-backup.1, …) there'
complete -c rbk -n "__fish_rbk_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l action -r -f -a "backup\t''
list\t''
info\t''
restore\t''
delete\t'Delete one backup (--backupId); its chunks are freed by the next gc'
gc\t'Delete backups by retention policy and free unreferenced packs'
verify\t'Check that backups are restorable: every chunk present (and with --read-data, intact)'
repair-index\t'Rebuild the local index from the store'
begin\t'Begin a backup written in parts by several machines (--module); prints its id'
part\t'Back up this data dir\'s tasks into the pending backup --backupId'
commit\t'Commit the pending backup --backupId once its parts cover every task'
abort\t'Give up on the pending backup --backupId'"
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l module -d 'Module name, e.g. com.mycompany.BankModule' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l backupId -d 'Backup id, e.g. com.mycompany.BankModule-00000193E038B5F8-DE' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l pageToken -d 'list: page token printed by the previous page' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l pageSize -d 'list: backups per page' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l tasks -d 'restore: only these tasks (comma-separated, e.g. `2,3`), with the module\'s own files' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l threads -d 'restore, placed: the module\'s task threads (Rama\'s launch setting; with --workers and --worker)' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l workers -d 'restore, placed: the worker processes the module runs in' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l replicationFactor -d 'restore, placed: replicas of each task, on different workers (default 1)' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l worker -d 'restore, placed: which worker (0..W-1) this machine is: it gets the tasks, replicas included, that worker runs (placement in docs/distributed.md), and module.json records the launch settings' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l max-age-hours -d 'gc: delete backups older than this (overrides backup.max.age.hours of every module)' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l min-backups-to-keep -d 'gc: keep at least this many newest backups per module (overrides backup.min.backups.to.keep)' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l repack-threshold -d 'gc: rewrite packs with more than this fraction of their bytes unreferenced' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l lease-seconds -d 'gc: declare a backup or restore dead after this long without a heartbeat' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l revoke -d 'gc: declare this session dead now, whatever its heartbeats say (repeatable; `gc --dry-run` lists the sessions). Its backup, if still running, fails and commits nothing' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l read-data-subset -d 'verify: download and check this share of the distinct chunks, chosen at random (e.g. `10%`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l side -d 'verify: which copy of the store to check when a mirror is configured (default: both)' -r -f -a "primary\t''
mirror\t''
both\t''"
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l mirror-wait -d 'backup, with a mirror: how long to wait, once the backup committed, for the mirror to catch up. A mirror still behind or unreachable then is reported on stderr, not an error: the backup is in the store, and the next backup, `rbk mirror sync` or `rbk serve` catches up' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l wait-parts -d 'backup: back up in parts: begin, write this data dir\'s part, wait up to SECONDS for the parts of the other machines (their `rbk serve` writes them), then commit. Fails (exit 3, naming the tasks missing) and gives the backup up if they do not all come' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l pending-lease-seconds -d 'begin, --wait-parts: how long a pending backup waits for its parts and commit before GC gives up on it (it holds back GC\'s sweeps meanwhile)' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l force -d 'Restore over a non-empty module dir (its current state is discarded)'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l yes -d 'Restore a module a host is running: it is stopped, replaced and started again'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l no-sync -d 'restore: skip fsync of restored files and dirs. Faster, but a power loss soon after can leave the module with empty or missing files; for throwaway copies only'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l keep-setid -d 'restore: keep setuid/setgid bits of restored files (stripped by default, so a store writer cannot plant a setuid binary through a restore)'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l ignore-dependencies -d 'restore: go ahead even if another module of the data dir depends on a depot or PState the backup does not have. Dangerous: that module then reads an object that is gone'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l no-undo-backup -d 'restore: do not back up the state being replaced first (by default it is, and the restore prints how to undo it)'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l dry-run -d 'gc: print what would be deleted; change nothing'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l rebind-store -d 'gc: run even though the data dir belongs to another store, and bind it to this one'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l read-data -d 'verify: download every chunk and check it against its BLAKE3 id'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand backup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rbk -n "__fish_rbk_using_subcommand list" -l module -d 'Module name, e.g. com.mycompany.BankModule' -r
complete -c rbk -n "__fish_rbk_using_subcommand list" -l pageToken -d 'Page token printed by the previous `list` page' -r
complete -c rbk -n "__fish_rbk_using_subcommand list" -l pageSize -d 'Backups per `list` page' -r
complete -c rbk -n "__fish_rbk_using_subcommand list" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand list" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand list" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand list" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand list" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand list" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand list" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand list" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand info" -l backupId -d 'Backup id, e.g. com.mycompany.BankModule-00000193E038B5F8-DE' -r
complete -c rbk -n "__fish_rbk_using_subcommand info" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand info" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand info" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand info" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand info" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand info" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand info" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand info" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l backupId -d 'Backup id, e.g. com.mycompany.BankModule-00000193E038B5F8-DE' -r
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l tasks -d 'restore: only these tasks (comma-separated, e.g. `2,3`), with the module\'s own files' -r
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l threads -d 'restore, placed: the module\'s task threads (Rama\'s launch setting; with --workers and --worker)' -r
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l workers -d 'restore, placed: the worker processes the module runs in' -r
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l replicationFactor -d 'restore, placed: replicas of each task, on different workers (default 1)' -r
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l worker -d 'restore, placed: which worker (0..W-1) this machine is: it gets the tasks, replicas included, that worker runs (placement in docs/distributed.md), and module.json records the launch settings' -r
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l force -d 'Restore over a non-empty module dir (its current state is discarded)'
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l yes -d 'Restore a module a host is running: it is stopped, replaced and started again'
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l no-sync -d 'restore: skip fsync of restored files and dirs. Faster, but a power loss soon after can leave the module with empty or missing files; for throwaway copies only'
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l keep-setid -d 'restore: keep setuid/setgid bits of restored files (stripped by default, so a store writer cannot plant a setuid binary through a restore)'
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l ignore-dependencies -d 'restore: go ahead even if another module of the data dir depends on a depot or PState the backup does not have. Dangerous: that module then reads an object that is gone'
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l no-undo-backup -d 'restore: do not back up the state being replaced first (by default it is, and the restore prints how to undo it)'
complete -c rbk -n "__fish_rbk_using_subcommand restore" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand restore" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand restore" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand delete" -l backupId -d 'Backup id, e.g. com.mycompany.BankModule-00000193E038B5F8-DE' -r
complete -c rbk -n "__fish_rbk_using_subcommand delete" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand delete" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand delete" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand delete" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand delete" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand delete" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand delete" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand delete" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l module -d 'Not a gc flag (gc works on every module); accepted only to say so' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l backupId -d 'Not a gc flag; accepted only to point at `rbk delete`' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l max-age-hours -d 'gc: delete backups older than this (overrides backup.max.age.hours of every module)' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l min-backups-to-keep -d 'gc: keep at least this many newest backups per module (overrides backup.min.backups.to.keep)' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l repack-threshold -d 'gc: rewrite packs with more than this fraction of their bytes unreferenced' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l lease-seconds -d 'gc: declare a backup or restore dead after this long without a heartbeat' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l revoke -d 'gc: declare this session dead now, whatever its heartbeats say (repeatable; `gc --dry-run` lists the sessions). Its backup, if still running, fails and commits nothing' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l dry-run -d 'gc: print what would be deleted; change nothing'
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l rebind-store -d 'gc: run even though the data dir belongs to another store, and bind it to this one'
complete -c rbk -n "__fish_rbk_using_subcommand gc" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand gc" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand gc" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l module -d 'Module name, e.g. com.mycompany.BankModule' -r
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l backupId -d 'Backup id, e.g. com.mycompany.BankModule-00000193E038B5F8-DE' -r
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l read-data-subset -d 'verify: download and check this share of the distinct chunks, chosen at random (e.g. `10%`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l side -d 'verify: which copy of the store to check when a mirror is configured (default: both)' -r -f -a "primary\t''
mirror\t''
both\t''"
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l read-data -d 'verify: download every chunk and check it against its BLAKE3 id'
complete -c rbk -n "__fish_rbk_using_subcommand verify" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand verify" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand verify" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -f -a "sync" -d 'Copy to the mirror every backup it lacks (packs first, then manifests, oldest first); exits 0 once the mirror holds every backup of the store'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -f -a "status" -d 'How far the mirror is behind: pending objects and bytes, the last backup mirrored, the age of the oldest pending one'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and not __fish_seen_subcommand_from sync status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from sync" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from sync" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from sync" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from sync" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from sync" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from sync" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from sync" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from sync" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from status" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from status" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from status" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from status" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from status" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from status" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from status" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from help" -f -a "sync" -d 'Copy to the mirror every backup it lacks (packs first, then manifests, oldest first); exits 0 once the mirror holds every backup of the store'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from help" -f -a "status" -d 'How far the mirror is behind: pending objects and bytes, the last backup mirrored, the age of the oldest pending one'
complete -c rbk -n "__fish_rbk_using_subcommand mirror; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rbk -n "__fish_rbk_using_subcommand repair-index" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand repair-index" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand repair-index" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand repair-index" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand repair-index" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand repair-index" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand repair-index" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand repair-index" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand stats" -l module -d 'Module name, e.g. com.mycompany.BankModule' -r
complete -c rbk -n "__fish_rbk_using_subcommand stats" -l backupId -d 'Backup id, e.g. com.mycompany.BankModule-00000193E038B5F8-DE' -r
complete -c rbk -n "__fish_rbk_using_subcommand stats" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand stats" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand stats" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand stats" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand stats" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand stats" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand stats" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand stats" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -f -a "dedup" -d 'Predict store size and dedup/compression ratios for directories taken as successive generations (e.g. copies of a module dir), for the store\'s chunk sizes and a sweep'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and not __fish_seen_subcommand_from dedup help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -l chunk-sizes -d 'Chunk sizes to try, `MIN/AVG/MAX` in bytes or with a K or M suffix (e.g. 128K/512K/2M); repeatable. Default: the store\'s sizes, then a quarter and four times the average' -r
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -l level -d 'zstd level' -r
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from dedup" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "dedup" -d 'Predict store size and dedup/compression ratios for directories taken as successive generations (e.g. copies of a module dir), for the store\'s chunk sizes and a sweep'
complete -c rbk -n "__fish_rbk_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rbk -n "__fish_rbk_using_subcommand serve" -l load -d 'Append this many random records per second to each running module (0: none)' -r
complete -c rbk -n "__fish_rbk_using_subcommand serve" -l for-seconds -d 'Stop after this many seconds (default: run until SIGINT/SIGTERM)' -r
complete -c rbk -n "__fish_rbk_using_subcommand serve" -l http -d 'Serve the backups page, its JSON API and Prometheus metrics on ADDR, e.g. `127.0.0.1:9180` (overrides `serve.http` in rbk.yaml; off when neither is set)' -r
complete -c rbk -n "__fish_rbk_using_subcommand serve" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand serve" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand serve" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand serve" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand serve" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand serve" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand serve" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand serve" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -f -a "generate" -d 'Write a new module into the data dir'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -f -a "create" -d 'Create an empty module that `rbk serve` can run (definition `bank`, `pageviews` or `relay`)'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -f -a "advance" -d 'Move a generated module one generation forward'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and not __fish_seen_subcommand_from generate create advance help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l module -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l tasks -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l size-mib -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l seed -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from generate" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l module -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l definition -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l tasks -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l reads -d 'Its topologies read their depot of this module instead of their own (module.json then says so in `subscribes` and `dependencies`), e.g. a `relay` module reading another `relay` module\'s `*events`' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -l module -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -l percent -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from advance" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from help" -f -a "generate" -d 'Write a new module into the data dir'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create an empty module that `rbk serve` can run (definition `bank`, `pageviews` or `relay`)'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from help" -f -a "advance" -d 'Move a generated module one generation forward'
complete -c rbk -n "__fish_rbk_using_subcommand testdata; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l dir -d 'Working directory (created; must not exist unless --force)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l tasks -r
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l seconds -d 'How long transfers run' -r
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l backups -d 'Backups taken while they run (evenly spread)' -r
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l modules -d '2: also run two modules reading each other\'s depot, and restore one while the other runs' -r
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l force -d 'Replace an existing working directory'
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l keep -d 'Keep the working directory afterwards'
complete -c rbk -n "__fish_rbk_using_subcommand demo" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand demo" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand demo" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand config" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand config" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand config" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand config" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand config" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand config" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand config" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand config" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand completions" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand completions" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand completions" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand completions" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand completions" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand completions" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand completions" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand completions" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand man" -l out-dir -r -F
complete -c rbk -n "__fish_rbk_using_subcommand man" -l config -d 'Config file [env: RBK_CONFIG] (default: ./rbk.yaml when it exists)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand man" -l data-dir -d 'Data dir holding `modules/` [env: RBK_DATA_DIR] (overrides `data.dir`)' -r -F
complete -c rbk -n "__fish_rbk_using_subcommand man" -l provider -d 'Backup provider, e.g. `fs /var/rbk` [env: RBK_PROVIDER] (overrides `backup.provider`)' -r
complete -c rbk -n "__fish_rbk_using_subcommand man" -l mirror -d 'The store\'s mirror, e.g. `s3 http://host:3900/bucket/rbk` [env: RBK_MIRROR] (overrides `backup.mirror`); see docs/mirror.md' -r
complete -c rbk -n "__fish_rbk_using_subcommand man" -l index-wait -d 'How long to wait for another rbk process (e.g. `rbk serve` taking a backup) to release the local index before giving up' -r
complete -c rbk -n "__fish_rbk_using_subcommand man" -l json -d 'Machine-readable JSON on stdout'
complete -c rbk -n "__fish_rbk_using_subcommand man" -s q -l quiet -d 'No progress bars'
complete -c rbk -n "__fish_rbk_using_subcommand man" -s h -l help -d 'Print help'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "backup" -d 'Back up a module; with --action, any backup operation (Rama-style)'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "list" -d 'List a module\'s backups, newest first'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "info" -d 'Show what a backup holds'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "restore" -d 'Restore a backup into the data dir'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "delete" -d 'Delete one backup; its chunks are freed by the next gc'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "gc" -d 'Delete backups by retention policy, then free packs no retained backup needs'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "verify" -d 'Check that backups are restorable without restoring them'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "mirror" -d 'Keep the store\'s mirror up to date (`sync`) or see how far behind it is (`status`)'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "repair-index" -d 'Rebuild the local chunk index from the store\'s pack trailers'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "stats" -d 'How much the store saves, and where: logical, unique and stored bytes, dedup and compression ratios, by module and kind of file; the store\'s garbage'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "bench" -d 'Measurements that need no store: `rbk bench dedup DIR...` predicts what rbk would store for successive generations, for several chunk sizes'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "serve" -d 'Run the modules of the data dir (those with a built-in `rbk.definition`), answer `rbk backup`/`rbk restore` on a control socket, and take periodic backups and GC as their dynamic options say'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "testdata" -d 'Generate or advance realistic module state (real RocksDB PStates)'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "demo" -d 'Generate a module, back it up over several generations, restore and check every backup, and print dedup ratio and throughput'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "config" -d 'Print the effective configuration and where each value came from'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "completions" -d 'Print a shell completion script (e.g. `rbk completions bash > /etc/bash_completion.d/rbk`)'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "man" -d 'Print the man page (roff), e.g. `rbk man > /usr/local/share/man/man1/rbk.1`; with --out-dir, write it and one page per subcommand (rbk-backup.1, …) there'
complete -c rbk -n "__fish_rbk_using_subcommand help; and not __fish_seen_subcommand_from backup list info restore delete gc verify mirror repair-index stats bench serve testdata demo config completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rbk -n "__fish_rbk_using_subcommand help; and __fish_seen_subcommand_from mirror" -f -a "sync" -d 'Copy to the mirror every backup it lacks (packs first, then manifests, oldest first); exits 0 once the mirror holds every backup of the store'
complete -c rbk -n "__fish_rbk_using_subcommand help; and __fish_seen_subcommand_from mirror" -f -a "status" -d 'How far the mirror is behind: pending objects and bytes, the last backup mirrored, the age of the oldest pending one'
complete -c rbk -n "__fish_rbk_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "dedup" -d 'Predict store size and dedup/compression ratios for directories taken as successive generations (e.g. copies of a module dir), for the store\'s chunk sizes and a sweep'
complete -c rbk -n "__fish_rbk_using_subcommand help; and __fish_seen_subcommand_from testdata" -f -a "generate" -d 'Write a new module into the data dir'
complete -c rbk -n "__fish_rbk_using_subcommand help; and __fish_seen_subcommand_from testdata" -f -a "create" -d 'Create an empty module that `rbk serve` can run (definition `bank`, `pageviews` or `relay`)'
complete -c rbk -n "__fish_rbk_using_subcommand help; and __fish_seen_subcommand_from testdata" -f -a "advance" -d 'Move a generated module one generation forward'

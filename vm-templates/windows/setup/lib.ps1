# lib.ps1: helpers dot-sourced by setup.ps1 and boot-marker.ps1 (Windows PowerShell 5.1).
#
# Every line goes to a log file under C:\harness\ and to COM2, the harness's
# marker channel (vm-templates/windows/domain.xml.j2: COM1 is EMS/SAC, COM2 is
# logged to com2.log on the host). The port is opened per line and closed again,
# so nothing holds it between lines; a port that cannot be opened is not an
# error (the line still reaches the log file).

$HarnessDir = 'C:\harness'
$MarkerPort = 'COM2'
$MarkerBaud = 115200

function Write-Com2 {
    param([Parameter(Mandatory = $true)][string]$Line)
    $port = $null
    try {
        $port = New-Object System.IO.Ports.SerialPort $MarkerPort, $MarkerBaud, 'None', 8, 'One'
        $port.NewLine = "`r`n"
        $port.WriteTimeout = 2000
        $port.Open()
        $port.WriteLine($Line)
    } catch {
        # No COM2 (or busy): the log file keeps the line.
    } finally {
        if ($null -ne $port) { $port.Dispose() }
    }
}

function Write-HarnessLine {
    param([Parameter(Mandatory = $true)][string]$Line, [string]$LogName = 'setup.log')
    if (-not (Test-Path -LiteralPath $HarnessDir)) {
        New-Item -ItemType Directory -Path $HarnessDir -Force | Out-Null
    }
    $stamp = (Get-Date).ToString('yyyy-MM-ddTHH:mm:ss')
    Add-Content -LiteralPath (Join-Path $HarnessDir $LogName) -Value "$stamp $Line" -Encoding UTF8
    Write-Com2 -Line $Line
}

function Write-SetupLog {
    param([Parameter(Mandatory = $true)][string]$Message)
    Write-HarnessLine -Line "HARNESS-SETUP $Message"
}

# Runs a native command; a non-zero exit code is an error naming the command.
function Invoke-Native {
    param([Parameter(Mandatory = $true)][string]$Exe, [string[]]$Arguments = @())
    $output = & $Exe @Arguments 2>&1 | Out-String
    if ($LASTEXITCODE -ne 0) {
        throw "$Exe $($Arguments -join ' ') exited with $LASTEXITCODE`: $($output.Trim())"
    }
    return $output
}

# One named step: logged before and after; an error stops everything with
# HARNESS-SETUP-ERROR <step>: <message> on COM2 (the host fails the build on it).
function Invoke-Step {
    param([Parameter(Mandatory = $true)][string]$Name, [Parameter(Mandatory = $true)][scriptblock]$Body)
    Write-SetupLog "step $Name"
    try {
        & $Body
    } catch {
        $message = ($_.Exception.Message -replace '\s+', ' ').Trim()
        Write-HarnessLine -Line "HARNESS-SETUP-ERROR $Name`: $message"
        exit 1
    }
    Write-SetupLog "step $Name ok"
}

# The driver's own word (drivers/windows/harnessflt.c, "status key"): the volatile
# values it writes under its service key, Parameters\State. $null when the key is
# not there (the driver did not run this boot, or is an older build).
$DriverStateKey = 'HKLM:\SYSTEM\CurrentControlSet\Services\harnessflt\Parameters\State'

function Get-DriverWord {
    $values = Get-ItemProperty -LiteralPath $DriverStateKey -ErrorAction SilentlyContinue
    if ($null -eq $values) { return $null }
    return [pscustomobject]@{
        Status     = [string]$values.Status
        Build      = [string]$values.Build
        Finished   = [int]$values.Finished
        Loaded     = @($values.Loaded | Where-Object { $_ })
        Rejected   = @($values.Rejected | Where-Object { $_ })
        Error      = [string]$values.Error
        Instances  = [int]$values.Instances
        Generation = [int]$values.Generation
    }
}

# The driver's word as the lines the Windows family parses (harness/families/windows.py),
# the same lines the Linux sensor prints: one per file, then the marker with
# source=driver. A driver that is loaded but has not finished (or wrote nothing) gets
# HARNESS-BOOT-ERROR instead: fltmc listing the filter is not "healthy".
function Get-DriverWordLines {
    param($Word, [bool]$Listed, [string]$Kind = 'LOADED')
    if (-not $Listed) { return @() }
    if ($null -eq $Word) {
        return @('HARNESS-BOOT-ERROR sensor: harnessflt is loaded but wrote no status (no Parameters\State key)')
    }
    if ($Word.Finished -ne 1) {
        return @("HARNESS-BOOT-ERROR sensor: harnessflt is loaded but has not finished reading its content (Status=$($Word.Status))")
    }
    $lines = @()
    foreach ($name in $Word.Loaded) { $lines += "harness_sensor: $name`: loaded (reported by the driver)" }
    foreach ($entry in $Word.Rejected) {
        $cut = $entry.IndexOf(': ')
        if ($cut -gt 0) { $lines += "harness_sensor: $($entry.Substring(0, $cut))`: rejected: $($entry.Substring($cut + 2))" }
    }
    if ($Word.Error) {
        $lines += "harness_sensor: \SystemRoot\System32\drivers\HarnessSensor: $($Word.Error)"
    }
    $files = $Word.Loaded.Count + $Word.Rejected.Count
    $lines += "HARNESS-SENSOR-$Kind build=$($Word.Build) files=$files loaded=$($Word.Loaded.Count) rejected=$($Word.Rejected.Count) instances=$($Word.Instances) generation=$($Word.Generation) status=$($Word.Status) source=driver"
    return $lines
}

# Whether harnessflt is loaded, from fltmc (the driver's DbgPrintEx lines reach a
# kernel debugger only; what it loaded comes from Get-DriverWord).
function Get-SensorState {
    $filters = & fltmc.exe filters 2>&1 | Out-String
    $loaded = $filters -match '(?im)^\s*harnessflt\s'
    $contentDir = Join-Path $env:SystemRoot 'System32\drivers\HarnessSensor'
    $files = 0
    if (Test-Path -LiteralPath $contentDir) {
        $files = @(Get-ChildItem -LiteralPath $contentDir -Filter 'C-00000291-*.sys' -File -ErrorAction SilentlyContinue).Count
    }
    $build = 'unknown'
    $buildFile = Join-Path $HarnessDir 'sensor-build.txt'
    if (Test-Path -LiteralPath $buildFile) { $build = (Get-Content -LiteralPath $buildFile -TotalCount 1).Trim() }
    return [pscustomobject]@{ Loaded = [bool]$loaded; Files = $files; Build = $build }
}

# ----------------------------------------------------------------- the image's driver
# image.json's "driver" block (harness/windows/package.py image_config): the sample sensor
# (harnessflt) or a vendor's driver, its service and content directory. An image built before
# the block existed has the sample.
function Get-ImageDriver {
    $path = Join-Path $HarnessDir 'image.json'
    $driver = $null
    if (Test-Path -LiteralPath $path) {
        $driver = (Get-Content -LiteralPath $path -Raw | ConvertFrom-Json).driver
    }
    if ($null -eq $driver) {
        return [pscustomobject]@{ Kind = 'sample'; Service = 'harnessflt'; Certificate = 'harness-test-signing.cer'
                                  ContentDir = (Join-Path $env:SystemRoot 'System32\drivers\HarnessSensor') }
    }
    return [pscustomobject]@{ Kind = [string]$driver.kind; Service = [string]$driver.service
                              ContentDir = [string]$driver.content_dir; Certificate = [string]$driver.certificate }
}

# A vendor driver's word, as lines a profile's `ready:` and `rejected:` regexes are matched
# against (docs/windows-vendor-driver.md): every line carries HARNESS- (the host reads only
# those from COM2). One value as text: numbers in decimal, REG_BINARY as hex (first 256
# bytes), REG_EXPAND_SZ unexpanded, CR LF TAB as \r \n \t, other control characters as \xHH,
# cut at 900 characters with "...".
function Format-DriverValue {
    param($Value)
    if ($null -eq $Value) { return '' }
    if ($Value -is [byte[]]) {
        return (($Value | Select-Object -First 256 | ForEach-Object { $_.ToString('x2') }) -join '')
    }
    $text = ([string]$Value).Replace("`r", '\r').Replace("`n", '\n').Replace("`t", '\t')
    $text = [regex]::Replace($text, '[\x00-\x1f\x7f]', { param($m) '\x{0:x2}' -f [int][char]$m.Value })
    if ($text.Length -gt 900) { $text = $text.Substring(0, 900) + '...' }
    return $text
}

# Every value under the driver's service key and its subkeys (Enum left out: the PnP
# manager's), breadth first, names sorted: "HARNESS-DRIVER-VALUE <Service>[/<sub>/<key>] <Name>=<value>";
# a REG_MULTI_SZ gives one line per string, <Name>[<i>]=<string>; the default value is
# (default). At most $Limit lines, then HARNESS-DRIVER-VALUES-CUT.
function Get-DriverValueLines {
    param([Parameter(Mandatory = $true)][string]$Service, [int]$Limit = 200)
    $root = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey("SYSTEM\CurrentControlSet\Services\$Service")
    $lines = New-Object System.Collections.Generic.List[string]
    if ($null -eq $root) { return ,$lines }
    $queue = New-Object System.Collections.Generic.Queue[object]
    $queue.Enqueue([pscustomobject]@{ Key = $root; Path = $Service })
    $total = 0
    while ($queue.Count -gt 0) {
        $item = $queue.Dequeue()
        $key = $item.Key
        foreach ($name in @($key.GetValueNames() | Sort-Object)) {
            $kind = $key.GetValueKind($name)
            $value = $key.GetValue($name, $null, [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames)
            $label = if ($name) { $name } else { '(default)' }
            if ($kind -eq [Microsoft.Win32.RegistryValueKind]::MultiString) {
                $strings = @($value)
                for ($i = 0; $i -lt $strings.Count; $i++) {
                    $total++
                    if ($lines.Count -lt $Limit) {
                        $lines.Add("HARNESS-DRIVER-VALUE $($item.Path) $($label)[$($i)]=$(Format-DriverValue $strings[$i])")
                    }
                }
            } else {
                $total++
                if ($lines.Count -lt $Limit) {
                    $lines.Add("HARNESS-DRIVER-VALUE $($item.Path) $($label)=$(Format-DriverValue $value)")
                }
            }
        }
        foreach ($sub in @($key.GetSubKeyNames() | Sort-Object)) {
            if ($item.Path -eq $Service -and $sub -eq 'Enum') { continue }
            $child = $key.OpenSubKey($sub)
            if ($null -ne $child) { $queue.Enqueue([pscustomobject]@{ Key = $child; Path = "$($item.Path)/$sub" }) }
        }
        $key.Close()
    }
    if ($total -gt $Limit) { $lines.Add("HARNESS-DRIVER-VALUES-CUT service=$Service shown=$Limit total=$total") }
    return ,$lines
}

# The service's state from sc.exe query (RUNNING, STOPPED, ..., MISSING when there is no
# such service), its exit codes and its start type from the service key.
function Get-DriverServiceState {
    param([Parameter(Mandatory = $true)][string]$Service)
    $text = & sc.exe query $Service 2>&1 | Out-String
    $state = 'MISSING'
    if ($text -match '(?m)^\s*STATE\s*:\s*\d+\s+(\w+)') { $state = $Matches[1] }
    $win32 = ''
    if ($text -match '(?m)^\s*WIN32_EXIT_CODE\s*:\s*(\d+)') { $win32 = $Matches[1] }
    $serviceExit = ''
    if ($text -match '(?m)^\s*SERVICE_EXIT_CODE\s*:\s*(\d+)') { $serviceExit = $Matches[1] }
    $start = (Get-ItemProperty -LiteralPath "HKLM:\SYSTEM\CurrentControlSet\Services\$Service" -Name Start -ErrorAction SilentlyContinue).Start
    $startName = @{ 0 = 'boot'; 1 = 'system'; 2 = 'auto'; 3 = 'demand'; 4 = 'disabled' }[[int]$start]
    if ($null -eq $start) { $startName = 'none' }
    $filters = & fltmc.exe filters 2>&1 | Out-String
    $filter = $null
    if ($filters -match ('(?im)^\s*' + [regex]::Escape($Service) + '\s+(\d+)\s+(\S+)')) {
        $filter = [pscustomobject]@{ Instances = $Matches[1]; Altitude = $Matches[2] }
    }
    return [pscustomobject]@{ State = $state; Win32Exit = $win32; ServiceExit = $serviceExit; Start = $startName; Filter = $filter }
}

# Whether this boot is Safe Mode (boot-start drivers outside SafeBoot\Minimal do not load).
function Test-SafeMode {
    if ($env:SAFEBOOT_OPTION) { return $true }
    $bootup = (Get-CimInstance -ClassName Win32_ComputerSystem -ErrorAction SilentlyContinue).BootupState
    return ($null -ne $bootup -and $bootup -notmatch '^Normal')
}

# The values once they have settled: read every 2 s until two reads in a row are the same
# (at most $Seconds), so a driver still writing its status is not caught half way.
function Wait-DriverValueLines {
    param([Parameter(Mandatory = $true)][string]$Service, [int]$Seconds = 60)
    $deadline = (Get-Date).AddSeconds($Seconds)
    $last = Get-DriverValueLines -Service $Service
    while ((Get-Date) -lt $deadline) {
        Start-Sleep -Seconds 2
        $now = Get-DriverValueLines -Service $Service
        if (($now -join "`n") -eq ($last -join "`n")) { return ,$now }
        $last = $now
    }
    return ,$last
}

# Everything the host gets of a vendor driver, in order: its state, its filter (if FltMgr
# lists it), its values, then HARNESS-DRIVER-DONE (docs/windows-vendor-driver.md).
function Get-VendorDriverLines {
    param([Parameter(Mandatory = $true)][string]$Service, [string]$ContentDir = '', [string]$Event = 'boot')
    $state = Get-DriverServiceState -Service $Service
    $lines = New-Object System.Collections.Generic.List[string]
    $lines.Add("HARNESS-DRIVER-STATE service=$Service state=$($state.State) start=$($state.Start) win32_exit=$($state.Win32Exit) service_exit=$($state.ServiceExit) source=sc")
    if ($null -ne $state.Filter) {
        $lines.Add("HARNESS-DRIVER-FILTER service=$Service listed=yes instances=$($state.Filter.Instances) altitude=$($state.Filter.Altitude) source=fltmc")
    } else {
        $lines.Add("HARNESS-DRIVER-FILTER service=$Service listed=no source=fltmc")
    }
    $values = if ($state.State -eq 'RUNNING') { Wait-DriverValueLines -Service $Service } else { Get-DriverValueLines -Service $Service }
    foreach ($line in $values) { $lines.Add($line) }
    $files = 0
    if ($ContentDir -and (Test-Path -LiteralPath $ContentDir)) {
        $files = @(Get-ChildItem -LiteralPath $ContentDir -File -ErrorAction SilentlyContinue).Count
    }
    $lines.Add("HARNESS-DRIVER-DONE service=$Service state=$($state.State) values=$($values.Count) files=$files event=$Event")
    return [pscustomobject]@{ State = $state; Lines = $lines }
}

# A vendor driver's online reload: FltMgr's unload and load for a listed minifilter, else
# sc.exe stop and start. (The sample has its own reload through its port, which keeps the
# hardened build's last good content; a vendor driver reads its content when it starts.)
function Restart-VendorDriver {
    param([Parameter(Mandatory = $true)][string]$Service)
    $state = Get-DriverServiceState -Service $Service
    if ($null -ne $state.Filter) {
        Invoke-Native 'fltmc.exe' @('unload', $Service) | Out-Null
        Invoke-Native 'fltmc.exe' @('load', $Service) | Out-Null
    } else {
        Invoke-Native 'sc.exe' @('stop', $Service) | Out-Null
        $deadline = (Get-Date).AddSeconds(30)
        while ((Get-DriverServiceState -Service $Service).State -ne 'STOPPED' -and (Get-Date) -lt $deadline) { Start-Sleep -Seconds 1 }
        Invoke-Native 'sc.exe' @('start', $Service) | Out-Null
    }
}

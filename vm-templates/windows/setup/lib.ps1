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

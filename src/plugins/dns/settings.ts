// mailproxy-dns' file, both ways: renderDnsFiles writes mailproxy-dns.ini from the config's dns.servers,
// readDnsSettings gives the plugin the servers as it reads them from Haraka's config. DnsIni is the file
// both sides name.
import type { Config } from '../../config/schema';
import { iniSection, renderIni, RESTART, type FileHeader, type IniAsRead, type RenderedPluginFiles } from '../../render/ini';
import type { HarakaConfig } from '../haraka/plugin';

/** mailproxy-dns.ini: the servers as one comma list. */
export interface DnsIni {
  main: { servers: string };
}

export interface DnsSettings {
  /** `ADDRESS` or `ADDRESS:PORT` each; none: the system resolver. */
  servers: string[];
}

export function dnsIni(config: Config): DnsIni {
  return { main: { servers: config.dns.servers.join(',') } };
}

export function renderDnsFiles(config: Config, header: FileHeader): RenderedPluginFiles {
  return {
    'mailproxy-dns.ini': renderIni(header(RESTART), [iniSection('main', dnsIni(config).main, { servers: 'Empty: the system resolver.' })]),
  };
}

/** The settings; `reload` runs when the file changes. */
export function readDnsSettings(config: HarakaConfig, reload?: () => void): DnsSettings {
  const cfg = config.get('mailproxy-dns.ini', reload) as IniAsRead<DnsIni>;
  const servers = cfg.main?.servers;
  return {
    servers: (servers === undefined ? '' : String(servers))
      .split(',')
      .map((server) => server.trim())
      .filter(Boolean),
  };
}
